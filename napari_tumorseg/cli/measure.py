"""``tumorseg measure MASK [--image IMAGE] [--brats] [--label V] [--json]``: lesion by lesion.

The mask goes through the package's readers (NIfTI, DICOM, DICOM-SEG, TIFF/PNG), so the
voxel spacing is the file's. Every value > 0 is tumour; ``--label V`` (repeatable) measures
the lesions made of label V only (e.g. ``--label 4``: the enhancing lesions of a BraTS map,
as RANO measures them). Lesions are the 26-connected components; each gets its volume, its
centroid and slices, its longest axial diameter with the longest perpendicular chord on that
slice, and their product (definitions: :mod:`napari_tumorseg.measurements`). ``--brats``
adds the whole tumour / tumour core / enhancing tumour volumes (the convention is recognised
from the labels, or named: ``--convention brats2023``). ``--image`` names the scan the mask was
drawn on: a mask without geometry (a TIFF/PNG) takes the scan's voxel size, a mask with one
must lie on the scan's grid. The table lists the 20 largest lesions (``--all``: every one);
``--json`` prints one object with all of them. Nothing printed names the files or the patient.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from napari_tumorseg import brats as _brats
from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.measurements import LESION_DISPLAY_CAP, REGION_TITLES, measure


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "measure",
        help="volume, lesions (longest x perpendicular axial diameter, product) and BraTS regions of a mask",
    )
    p.add_argument("mask", help="label mask: NIfTI, DICOM (ROI series or DICOM-SEG), TIFF/PNG")
    p.add_argument("--image", default=None, metavar="IMAGE",
                   help="the scan the mask was drawn on: its voxel size for a mask without geometry; "
                        "a mask with geometry must lie on its grid")
    p.add_argument("--brats", action="store_true",
                   help="the labels are BraTS labels: report whole tumour / tumour core / enhancing "
                        "tumour volumes (the convention is recognised from the labels)")
    p.add_argument("--convention", choices=list(_brats.CONVENTIONS), default=None,
                   help="the BraTS convention, when the labels cannot tell (1-3 without 4: brats2023 "
                        "or brats); implies --brats")
    p.add_argument("--label", type=int, action="append", default=None, metavar="V",
                   help="measure the lesions made of label V only (repeatable); default every value > 0")
    p.add_argument("--series", type=int, default=None, metavar="N",
                   help="which volume of MASK to use when it holds several (as in `tumorseg info`)")
    p.add_argument("--all", action="store_true",
                   help=f"list every lesion in the table (default: the {LESION_DISPLAY_CAP} largest)")
    p.add_argument("--json", action="store_true", help="print one JSON object (every lesion)")
    p.set_defaults(func=run)


def _read_one(path: str, series: int | None, what: str, prefer_labels: bool):
    from napari_tumorseg.io.readers import read_path

    volumes = read_path(path, series)
    if len(volumes) > 1 and prefer_labels:
        labels = [v for v in volumes if v.kind == "labels"]
        if len(labels) == 1:
            volumes = labels
    if len(volumes) != 1:
        hint = " with --series N" if what == "MASK" else " (give one file or series folder)"
        raise TumorSegError(f"{what} holds {len(volumes)} volumes; pick one{hint}")
    return volumes[0]


def load_mask(path: str, series: int | None = None, image: str | None = None):
    """(mask array (z, y, x), spacing (z, y, x) mm, label names or None) through the readers,
    checked as a label mask."""
    vol, data = load_mask_volume(path, series, image)
    names = vol.metadata.get("label_names") if isinstance(vol.metadata, dict) else None
    return data, tuple(float(s) for s in vol.spacing), names or None


def load_mask_volume(path: str, series: int | None = None, image: str | None = None):
    """(the mask's Volume, its array (z, y, x)) through the readers, checked as a label mask;
    a mask without geometry takes ``image``'s grid. Messages name neither file nor patient."""
    from napari_tumorseg.cli.evaluate import MAX_LABELS
    from napari_tumorseg.io.grid import adopt_grid, check_same_grid, has_geometry

    vol = _read_one(path, series, "MASK", prefer_labels=True)
    if vol.data.ndim != 3:
        raise TumorSegError(f"MASK has channels {tuple(vol.data.shape)}; give a single label mask")
    data = np.asarray(vol.data)
    if data.dtype.kind not in "biuf":
        raise TumorSegError(f"MASK holds {data.dtype} values, not labels")
    if data.dtype.kind == "f":
        if not np.isfinite(data).all():
            raise TumorSegError("MASK holds NaN/Inf values: not a label mask")
        if not np.array_equal(data, np.round(data)):
            raise TumorSegError("MASK holds non-integer values (a probability map?): threshold it first")
    if data.dtype.kind in "if" and data.min() < 0:
        raise TumorSegError(f"MASK holds negative values (down to {data.min():g}): not a label mask")
    n_values = len(np.unique(data))
    if n_values > MAX_LABELS + 1:
        raise TumorSegError(f"MASK holds {n_values} distinct values: an image, not a label mask")
    if image is not None:
        scan = _read_one(image, None, "IMAGE", prefer_labels=False)
        if has_geometry(vol):
            reason = check_same_grid(vol, scan)
            if reason:
                raise TumorSegError(f"MASK is not on the grid of IMAGE: {reason}")
        else:
            if vol.spatial_shape != scan.spatial_shape:
                raise TumorSegError(
                    "MASK and IMAGE differ in size: " + "x".join(map(str, vol.spatial_shape)) + " vs "
                    + "x".join(map(str, scan.spatial_shape)) + " voxels (z, y, x)")
            vol = adopt_grid(vol, scan)
    return vol, data


def measure_mask(path: str, series: int | None = None, image: str | None = None,
                 brats: str | None = None, labels: list[int] | None = None) -> dict:
    """What ``--json`` prints."""
    data, spacing, label_names = load_mask(path, series, image)
    if labels:
        present = {int(v) for v in np.unique(data)} - {0}
        missing = [v for v in labels if v not in present]
        if missing:
            have = ", ".join(map(str, sorted(present))) or "none (the mask is empty)"
            raise TumorSegError(f"--label {missing[0]}: no such label in MASK (its labels: {have})")
    try:
        result = measure(data, spacing, label_names, brats=brats, lesion_labels=labels,
                         file_names=(Path(path).name, Path(path).parent.name))
    except TumorSegError as err:
        if brats == "auto":
            raise TumorSegError(f"--brats: {err} (--convention NAME)") from None
        raise
    return {"shape": [int(s) for s in data.shape], **result}


def _lesion_table(lesions: list[dict], cap: int | None) -> list[str]:
    header = ["lesion", "volume mL", "voxels", "longest mm", "perp. mm", "product mm²", "slice",
              "slices", "labels", "RANO"]
    shown = lesions if cap is None else lesions[:cap]
    body = [[str(les["lesion"]), f"{les['volume_ml']:.3f}", str(les["voxel_count"]),
             f"{les['diameter_mm']:.1f}", f"{les['perpendicular_mm']:.1f}", f"{les['product_mm2']:.0f}",
             str(les["slice"]), f"{les['slices'][0]}-{les['slices'][1]}",
             ",".join(map(str, les["labels"])),
             "measurable" if les.get("measurable", True) else "non-measurable"] for les in shown]
    widths = [max(len(row[c]) for row in [header, *body]) for c in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if len(lesions) > len(shown):
        rest = lesions[len(shown):]
        lines.append(f"... and {len(rest)} more lesions ({sum(les['volume_ml'] for les in rest):.3f} mL "
                     f"in all, none larger than {shown[-1]['volume_ml']:.3f} mL; --all or --json lists them)")
    return lines


def format_table(result: dict, cap: int | None = LESION_DISPLAY_CAP) -> str:
    lines = [
        "Grid: " + "x".join(str(s) for s in result["shape"]) + " voxels at "
        + " x ".join(f"{s:.4g}" for s in result["spacing_mm"]) + " mm (z, y, x)",
        f"Measured: {'label(s) ' + ', '.join(map(str, result['lesion_labels'])) if 'lesion_labels' in result else 'every value > 0'}",
        f"Tumour volume: {result['volume_ml']:.3f} mL ({result['voxel_count']} voxels)",
        f"Lesions: {result['n_lesions']} (26-connected components), {result.get('n_measurable', 0)} measurable "
        "(RANO: both diameters ≥ 10 mm, on ≥ 2 slices)",
    ]
    if result["n_lesions"]:
        lines.append(
            f"Largest axial diameter: {result['largest_axial_diameter_mm']:.1f} mm x "
            f"{result['perpendicular_diameter_mm']:.1f} mm perpendicular "
            f"({result['bidimensional_product_mm2']:.0f} mm²), lesion {result['diameter_lesion']}, "
            f"slice {result['diameter_slice']}")
        lines.append("")
        lines += _lesion_table(result["lesions"], cap)
    for name, v in (result.get("label_volumes_ml") or {}).items():
        lines.append(f"{name}: {v:.3f} mL")
    regions = result.get("regions")
    if regions:
        lines.append(f"BraTS regions ({regions['convention']} labels):")
        for name in _brats.REGION_NAMES:
            r = regions[name]
            lines.append(f"  {REGION_TITLES[name]}: {r['volume_ml']:.3f} mL (labels "
                         f"{', '.join(map(str, r['labels']))}; {r['voxel_count']} voxels)")
    return "\n".join(lines)


def run(args) -> int:
    brats = args.convention or ("auto" if args.brats else None)
    result = measure_mask(args.mask, args.series, args.image, brats, args.label)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result, None if args.all else LESION_DISPLAY_CAP))
    return 0
