"""``tumorseg edit MASK -o OUT [--fill-holes] [--remove-islands MM3] [--border MM] ...``

The Correct dock's whole-mask tools on a saved label map, for a folder of masks a script
goes through: fill holes, remove islands smaller than a volume, move a border by some mm
(all labels, or one with ``--label V``; ``--over-other-labels`` lets that label take its
neighbours' voxels). The tools run in that order and each prints its one-line result; the
same functions as the dock (:mod:`napari_tumorseg.editing`). The mask keeps its grid, its
label names and colours; OUT's name says the format. Nothing printed names the files or the
patient.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from napari_tumorseg.errors import TumorSegError

_SUFFIXES = ".nii.gz, .nii, .nrrd, .seg.nrrd, .mha, .mhd, .tif or .tiff"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "edit",
        help="fill holes, remove islands or move a border by N mm in a saved label map (the Correct dock's tools)",
    )
    p.add_argument("mask", help="label map: NIfTI, NRRD / .seg.nrrd, MetaImage, DICOM (ROI series or SEG), TIFF")
    p.add_argument("-o", "--output", required=True,
                   help=f"the edited map: {_SUFFIXES}")
    p.add_argument("--fill-holes", action="store_true", help="fill background enclosed by one label")
    p.add_argument("--remove-islands", type=float, default=None, metavar="MM3",
                   help="remove tumour components smaller than MM3 cubic millimetres (with --2d: square mm per slice)")
    p.add_argument("--border", type=float, default=None, metavar="MM",
                   help="move the border by MM millimetres: positive grows, negative shrinks")
    p.add_argument("--label", type=int, default=None, metavar="V",
                   help="--border moves label V's border only (default: the whole segmentation's)")
    p.add_argument("--over-other-labels", action="store_true",
                   help="--border --label V may take the other labels' voxels (default: background only)")
    p.add_argument("--2d", dest="slice_only", action="store_true",
                   help="edit each axial slice on its own (2D), nothing across slices")
    p.add_argument("--image", default=None, metavar="IMAGE",
                   help="the scan the mask was drawn on: its grid for a mask without geometry (a TIFF/PNG)")
    p.add_argument("--series", type=int, default=None, metavar="N",
                   help="which volume of MASK to use when it holds several (as in `tumorseg info`)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run)


def edit_labels(labels: np.ndarray, spacing, fill: bool = False, islands_mm3: float | None = None,
                border_mm: float | None = None, label: int | None = None, over_other_labels: bool = False,
                slice_only: bool = False) -> tuple[np.ndarray, list[str]]:
    """(edited labels, one message per tool run) — the tools in the dock's order."""
    from napari_tumorseg import editing

    if not fill and islands_mm3 is None and border_mm is None:
        raise TumorSegError("nothing to do: give --fill-holes, --remove-islands MM3 or --border MM")
    if (label is not None or over_other_labels) and border_mm is None:
        raise TumorSegError("--label and --over-other-labels go with --border MM")
    out, messages = np.asarray(labels), []
    if label is not None:
        present = sorted(int(v) for v in np.unique(out) if v > 0)
        if label not in present:
            have = ", ".join(map(str, present)) or "none (the mask is empty)"
            raise TumorSegError(f"--label {label}: no such label in MASK (its labels: {have})")
    if fill:
        r = editing.fill_holes(out, slice_only=slice_only)
        out, messages = r.labels, [*messages, r.message]
    if islands_mm3 is not None:
        r = editing.remove_islands(out, islands_mm3, spacing, slice_only=slice_only)
        out, messages = r.labels, [*messages, r.message]
    if border_mm is not None:
        r = editing.margin(out, border_mm, spacing, slice_only=slice_only, value=label,
                           overwrite=over_other_labels)
        out, messages = r.labels, [*messages, r.message]
    return out, messages


def run(args) -> int:
    from napari_tumorseg.cli.measure import load_mask_volume
    from napari_tumorseg.export import export_labels, format_from_path
    from napari_tumorseg.fileio import check_writable

    out = Path(args.output)
    if format_from_path(out) not in ("nifti", "nrrd", "mha", "tiff"):  # the formats that need no source series
        raise TumorSegError(f"{out.name}: output must end in {_SUFFIXES}")
    check_writable(out, args.overwrite)  # refuse before any work
    vol, data = load_mask_volume(args.mask, args.series, args.image)
    labels = data.astype(np.int64) if data.dtype.kind == "f" else data
    edited, messages = edit_labels(labels, vol.spacing, args.fill_holes, args.remove_islands, args.border,
                                   args.label, args.over_other_labels, args.slice_only)
    for line in messages:
        print(line)
    meta = vol.metadata if isinstance(vol.metadata, dict) else {}
    written = export_labels(edited, None, out, source=vol, overwrite=args.overwrite,
                            names=meta.get("label_names"), colors=meta.get("label_colors"))
    changed = int(np.count_nonzero(edited != labels))
    print(f"wrote {len(written)} file(s): {changed} voxels changed")
    return 0
