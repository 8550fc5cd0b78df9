"""Open a DICOM Segmentation (SEG) file as a labels Volume on its source series' grid.

A SEG stores only its non-empty frames, each with a position in the patient frame and a
reference to the source instance it was drawn on. Two ways to a volume, best first:

1. the source series is found near the SEG (its folder, or the folder above and its
   sub-folders: how studies are laid out on disk): the labels are put on that series'
   grid, with its DICOM metadata, so the mask overlays the scan voxel for voxel and can be
   exported again as DICOM-SEG;
2. otherwise the frames' own positions make the volume (highdicom's ``get_volume``),
   placed correctly in the scanner. A SEG of this plugin stores a frame for every source
   slice (export.dicom_seg), so this is the source grid itself, voxel for voxel; a SEG
   that left its empty frames out (other tools) spans only its labelled slices, and a
   warning says so (on a tilted series napari then draws that slab about its own centre,
   a fraction of a millimetre per slice off the series: open it beside its series).

Label values are the original ones (export.dicom_seg keeps them in the Tracking ID).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from napari_tumorseg.errors import ReadError, first_line
from napari_tumorseg.io.volume import Volume

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
# Files looked at while searching for the source series: bounded so a SEG on a big
# share does not trigger a crawl.
_SEARCH_LIMIT = 3000


def is_dicom_seg(path: str | os.PathLike) -> bool:
    """True for a DICOM file whose SOP class is Segmentation Storage (header only)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:
        return False
    return str(ds.get("SOPClassUID", "")) == SEGMENTATION_STORAGE


def find_dicom_segs(folder: str | os.PathLike) -> list[Path]:
    """DICOM-SEG files under ``folder`` (bounded walk, headers only), in path order."""
    found = []
    for root, dirs, files in _limited_walk(Path(folder)):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if not name.startswith(".") and is_dicom_seg(path):
                found.append(path)
    return found


def _referenced_series(seg) -> set[str]:
    return {str(s.SeriesInstanceUID) for s in getattr(seg, "ReferencedSeriesSequence", [])}


def _candidate_folders(path: Path) -> list[Path]:
    here = path.parent
    return [here, here.parent] if here.parent != here else [here]


def _find_source_series(path: Path, series_uids: set[str]):
    """The DicomSeries the SEG references, scanned from the folders near it, or None."""
    from napari_tumorseg.io.dicom import scan_dicom

    for folder in _candidate_folders(path):
        try:
            n_files = sum(len(f) for _, _, f in _limited_walk(folder))
        except OSError:
            continue
        if n_files > _SEARCH_LIMIT:
            continue
        try:
            series, _ = scan_dicom(folder)
        except Exception:
            continue
        for s in series:
            if s.series_uid in series_uids:
                return s
    return None


def _limited_walk(folder: Path):
    count = 0
    for root, dirs, files in os.walk(folder):
        count += len(files)
        yield root, dirs, files
        if count > _SEARCH_LIMIT:
            return


def read_dicom_seg_volume(path: str | os.PathLike) -> Volume:
    """A DICOM-SEG file as a labels Volume (see the module docstring)."""
    from napari_tumorseg.export.dicom_seg import _segment_values, _segread, _value_lut, read_dicom_seg
    from napari_tumorseg.io.dicom import load_dicom_series

    path = Path(path)
    seg = _segread(path)
    name = str(getattr(seg, "SeriesDescription", "") or path.stem)
    label_names = _label_names(seg)
    source = _find_source_series(path, _referenced_series(seg))
    if source is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the source's own load notes are not the SEG's
            ref = load_dicom_series(source)
        files = ref.metadata["dicom"].slice_files
        labels = read_dicom_seg(path, files)
        return Volume(
            data=labels,
            spacing=ref.spacing,
            affine=ref.affine,
            name=name,
            kind="labels",
            modality="SEG",
            source=[str(path)],
            metadata={"dicom": ref.metadata["dicom"], "dicom_seg": {"source_found": True}, **label_names},
        )

    try:
        vol = seg.get_volume(combine_segments=True, relabel=False, allow_missing_positions=True)
    except Exception as err:
        raise ReadError(
            f"{path.name}: DICOM-SEG whose source series is not beside it and whose frames do "
            f"not form a volume ({first_line(err, 120)})"
        ) from None
    lut = _value_lut(_segment_values(seg), int(vol.array.max(initial=0)) + 1)
    labels = lut[np.asarray(vol.array).astype(np.int64)]
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine = lps_to_ras @ np.asarray(vol.affine, dtype=float)
    spacing = tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))
    referenced = sum(len(getattr(series, "ReferencedInstanceSequence", []))
                     for series in getattr(seg, "ReferencedSeriesSequence", []))
    notes = []
    if labels.shape[0] < referenced:
        # Warned by whoever shows it (the napari reader turns metadata warnings into notices).
        notes.append("source series not found beside the SEG: only the labelled slices are shown")
    return Volume(
        data=labels,
        spacing=spacing,
        affine=affine,
        name=name,
        kind="labels",
        modality="SEG",
        source=[str(path)],
        metadata={"dicom_seg": {"source_found": False}, "warnings": notes, **label_names},
    )


def _label_names(seg) -> dict:
    """{"label_names": {value: segment label}} of a SEG's segments, or {}: what each value is
    (a region map's oedema / core / enhancing), as an NRRD segmentation's names say it."""
    from napari_tumorseg.export.dicom_seg import _segment_values

    names = {}
    try:
        for number, value in _segment_values(seg).items():
            label = str(seg.get_segment_description(number).segment_label or "").strip()
            if label:
                names[int(value)] = label
    except (AttributeError, KeyError, ValueError, TypeError):
        return {}
    return {"label_names": names} if names else {}
