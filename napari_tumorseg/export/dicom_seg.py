"""Labels -> DICOM Segmentation (highdicom) that references the source DICOM series.

The labels are (z, y, x) on the source grid: ``labels[k]`` is the segmentation of the
k-th source slice, in the order the source files are given (the readers' slice order,
``Volume.metadata["dicom"]["slice_files"]``), rows = y, columns = x. highdicom takes
each frame's position, orientation and pixel spacing from the source instance it
references, so the SEG lands on exactly the source's grid and Frame of Reference.

One BINARY segment per non-zero label value, numbered 1..K in increasing value order
(DICOM needs consecutive segment numbers, label values need not be). The original
value is kept as the segment's Tracking ID ``"label <value>"`` so that
:func:`read_dicom_seg` gives back the same values.

Every source slice gets a frame, empty ones included (highdicom's ``omit_empty_frames``
off): the SEG then spells out the whole source grid by itself. A SEG holding only its
labelled frames, opened without its source series, can only be rebuilt as the slab of
those frames; on a tilted series (BRAINIX, 4.4°) napari places a slab flat about its own
centre, not the series', so it showed ~0.5 mm per slice of centre offset away from where
it was drawn (0.9 mm for a lesion off-centre by two slices). Empty binary frames cost
rows x columns / 8 bytes each.

Algorithm type (:func:`segment_algorithm`, shared by the Correct dock and the CLI): ``MANUAL``
unless ``algorithm`` names the model that made the labels,
then ``SEMIAUTOMATIC`` (a model's output that a person may have corrected) with an
Algorithm Identification (family: Artificial Intelligence).

A Volume from the readers is in the radiological display order (io.orientation), not
the files' order: given such a Volume as ``source``, the labels are put back in the
files' slice order before writing, and :func:`read_dicom_seg` returns them in the
Volume's order again.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from napari_tumorseg import __version__
from napari_tumorseg.errors import ReadError, TumorSegError, WriteError, first_line
from napari_tumorseg.fileio import atomic_path, check_writable

_TRACKING_PREFIX = "label "

# Property types for the BraTS region names of napari_tumorseg.editing; others: Neoplasm.
_PROPERTY_BY_WORD = {
    "edema": codes.SCT.Edema,
    "oedema": codes.SCT.Edema,
    "necro": codes.SCT.Necrosis,
}


# Type 2 attributes the SEG copies or reads from its source (Patient, General Study and
# Image Plane modules); empty is legal for each, absent is not.
_TYPE2_COPIED = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    "SliceThickness",
)


def _source_files(source: Any) -> list[Path]:
    """File list in slice order from a path list, a Volume (its ``metadata["dicom"]``, a
    DicomReference) or a mapping with ``slice_files``."""
    if hasattr(source, "metadata") and hasattr(source, "source"):
        ref = (source.metadata or {}).get("dicom")
        files = getattr(ref, "slice_files", None) or source.source
    elif isinstance(source, Mapping):
        files = source.get("slice_files") or source.get("source")
    else:
        files = source
    if not files:
        raise TumorSegError("DICOM-SEG export needs the source DICOM files of the labels")
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    return [Path(f) for f in files]


def _read_sources(files: list[Path]) -> list[pydicom.Dataset]:
    datasets = []
    for f in files:
        try:
            # Pixel data is not needed: highdicom copies geometry and identifiers only.
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except (OSError, pydicom.errors.InvalidDicomError) as err:
            raise ReadError(f"cannot read source DICOM {f}: {first_line(err)}") from err
        # highdicom copies the patient module and validates it; real scanners write
        # values such as PatientSex "0000" (BRAINIX). The SEG gets an empty value there.
        if str(ds.get("PatientSex", "")).strip().upper() not in ("", "M", "F", "O"):
            ds.PatientSex = ""
        # Type 2 attributes (present, may be empty) that highdicom copies from the source:
        # minimal real-world series (anonymisers, research exports) leave them out entirely.
        for keyword in _TYPE2_COPIED:
            if keyword not in ds:
                setattr(ds, keyword, "")
        datasets.append(ds)
    series = {ds.get("SeriesInstanceUID") for ds in datasets}
    if len(series) != 1:
        raise TumorSegError(f"the source files span {len(series)} series; give one series")
    frames = {ds.get("FrameOfReferenceUID") for ds in datasets}
    if len(frames) != 1 or None in frames:
        raise TumorSegError("the source slices do not share one FrameOfReferenceUID")
    return datasets


def _in_file_order(labels: np.ndarray, source: Any) -> np.ndarray:
    """Labels on a reoriented Volume's grid -> the order of its source files (else as given)."""
    if not hasattr(source, "metadata"):
        return labels
    from napari_tumorseg.io.orientation import to_source_order

    try:
        return to_source_order(labels, source)[0]
    except ValueError:
        raise TumorSegError(
            f"labels {labels.shape} are not on the grid of {getattr(source, 'name', 'the source')} "
            f"{tuple(getattr(source, 'spatial_shape', ()))}"
        ) from None


def _rgb255(color) -> tuple[float, float, float]:
    c = [float(v) for v in color][:3]
    if max(c) <= 1.0:
        c = [v * 255.0 for v in c]
    return tuple(min(max(v, 0.0), 255.0) for v in c)  # type: ignore[return-value]


def _property_type(name: str):
    low = name.lower()
    for word, code in _PROPERTY_BY_WORD.items():
        if word in low:
            return code
    return codes.SCT.Neoplasm


def segment_algorithm(model_name: str | None, version: str = ""):
    """``(SegmentAlgorithmType, AlgorithmIdentificationSequence or None)``: the one rule the
    Correct dock and ``tumorseg predict`` share.

    Labels a model produced are SEMIAUTOMATIC with the model named, whether or not a person
    corrected them afterwards (the SEG cannot tell which voxels were edited); labels drawn
    by hand, with no model behind them, are MANUAL.
    """
    import highdicom as hd

    if not model_name:
        return hd.seg.SegmentAlgorithmTypeValues.MANUAL, None
    return hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC, hd.AlgorithmIdentificationSequence(
        name=model_name,
        family=codes.cid7162.ArtificialIntelligence,
        version=version or __version__,
        source="napari-tumorseg",
    )


def write_dicom_seg(
    labels: np.ndarray,
    source: Sequence[str | os.PathLike] | Any,
    out_path: str | os.PathLike,
    segment_names: Mapping[int, str] | None = None,
    segment_colors: Mapping[int, Sequence[float]] | None = None,
    overwrite: bool = False,
    algorithm: str | None = None,
    algorithm_version: str = "",
    series_description: str = "tumour segmentation",
    series_number: int = 300,
) -> Path:
    """Write ``labels`` (z, y, x) as a DICOM-SEG referencing the ``source`` series.

    ``source``: the source DICOM files in slice order (primary), or a Volume read from
    DICOM, or its ``metadata["dicom"]``. ``segment_colors`` are RGB(A) in 0-1 or 0-255.
    Refuses to overwrite an existing file unless ``overwrite``.
    """
    import highdicom as hd

    out_path = check_writable(out_path, overwrite)
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels[None]
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    if labels.ndim != 3 or not np.issubdtype(labels.dtype, np.integer):
        raise TumorSegError(f"labels must be an integer (z, y, x) array, got {labels.dtype} {labels.shape}")
    if labels.min(initial=0) < 0:
        raise TumorSegError("labels must not be negative")
    labels = _in_file_order(labels, source)
    files = _source_files(source)
    datasets = _read_sources(files)
    if any(int(d.get("NumberOfFrames", 1) or 1) != 1 for d in datasets):
        # Frame-level references (enhanced MR) need their own read-back path: not built yet.
        raise TumorSegError("DICOM-SEG export of multi-frame (enhanced) source images is not supported yet")
    rows, cols = int(datasets[0].Rows), int(datasets[0].Columns)
    expected = (len(datasets), rows, cols)
    if labels.shape != expected:
        raise TumorSegError(
            f"labels {labels.shape} are not on the source grid {expected} (slices, rows, columns)"
        )
    values = [int(v) for v in np.unique(labels) if v != 0]
    if not values:
        raise TumorSegError("the labels are empty: there is nothing to export")

    names = dict(segment_names or {})
    colors = dict(segment_colors or {})
    algo_type, algo_id = segment_algorithm(algorithm, algorithm_version)
    descriptions = []
    for number, value in enumerate(values, start=1):
        name = names.get(value) or ("tumour" if len(values) == 1 else f"label {value}")
        color = colors.get(value)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=name[:64],
                segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
                segmented_property_type=_property_type(name),
                algorithm_type=algo_type,
                algorithm_identification=algo_id,
                tracking_uid=hd.UID(),
                tracking_id=f"{_TRACKING_PREFIX}{value}",
                display_color=hd.color.CIELabColor.from_rgb(*_rgb255(color)) if color is not None else None,
            )
        )
    # highdicom reads an integer array as a label map whose values are segment numbers.
    lut = np.zeros(int(labels.max()) + 1, np.uint8 if len(values) < 256 else np.uint16)
    lut[values] = np.arange(1, len(values) + 1)
    seg_array = lut[labels]
    try:
        with warnings.catch_warnings():
            # Source person names like "BRAINIX" are copied as they are: not the user's concern.
            warnings.filterwarnings("ignore", message=".*intended person name")
            seg = hd.seg.Segmentation(
                source_images=datasets,
                pixel_array=seg_array,
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=descriptions,
                series_instance_uid=hd.UID(),
                series_number=series_number,
                sop_instance_uid=hd.UID(),
                instance_number=1,
                manufacturer="napari-tumorseg",
                manufacturer_model_name="napari-tumorseg",
                software_versions=__version__,
                device_serial_number="0",
                series_description=series_description[:64],
                omit_empty_frames=False,  # the whole source grid, see the module docstring
            )
    except (ValueError, TypeError, AttributeError) as err:
        raise WriteError(f"cannot build a DICOM-SEG from these sources: {first_line(err)}") from err
    try:
        with atomic_path(out_path, overwrite=overwrite) as tmp:
            seg.save_as(tmp)
    except OSError as err:
        raise WriteError(f"cannot write {out_path}: {err.strerror}") from err
    return out_path


def _value_lut(mapping: Mapping[int, int], size: int = 0) -> np.ndarray:
    """Segment number -> label value table, in the narrowest unsigned type that holds every
    value (a Tracking ID "label 70000" must not wrap in a uint16)."""
    top = max(mapping.values(), default=0)
    dtype = np.uint8 if top <= 255 else np.uint16 if top <= 65535 else np.uint32
    lut = np.zeros(max(max(mapping, default=0) + 1, size), dtype=dtype)
    for number, value in mapping.items():
        lut[number] = value
    return lut


def _segment_values(seg) -> dict[int, int]:
    """Segment number -> original label value (from the Tracking ID, else the number)."""
    out = {}
    for number in seg.segment_numbers:
        desc = seg.get_segment_description(number)
        tid = desc.tracking_id or ""
        out[number] = (
            int(tid[len(_TRACKING_PREFIX):])
            if tid.startswith(_TRACKING_PREFIX) and tid[len(_TRACKING_PREFIX):].isdigit()
            else number
        )
    return out


def dicom_seg_segments(path: str | os.PathLike) -> dict[int, dict[str, Any]]:
    """Label value -> {"name", "number", "algorithm_type"} of every segment in a DICOM-SEG."""
    seg = _segread(path)
    out = {}
    for number, value in _segment_values(seg).items():
        desc = seg.get_segment_description(number)
        out[value] = {
            "name": str(desc.segment_label),
            "number": number,
            "algorithm_type": str(desc.algorithm_type.value),
        }
    return out


def _segread(path):
    import highdicom as hd

    try:
        return hd.seg.segread(path)
    except (OSError, ValueError, AttributeError, pydicom.errors.InvalidDicomError) as err:
        raise ReadError(f"{path} is not a readable DICOM-SEG: {first_line(err)}") from err


def read_dicom_seg(
    path: str | os.PathLike, source: Sequence[str | os.PathLike] | Any | None = None
) -> np.ndarray:
    """Labels (z, y, x) on the source grid from a DICOM-SEG, with the original label values.

    Slice order is that of ``source`` (files in slice order, a Volume, or its DICOM
    metadata) when given, else the order in which the SEG lists its referenced source
    instances (the order :func:`write_dicom_seg` was given).
    """
    seg = _segread(path)
    if source is not None:
        uids = [str(ds.SOPInstanceUID) for ds in _read_sources(_source_files(source))]
    else:
        uids = [
            str(inst.ReferencedSOPInstanceUID)
            for series in seg.ReferencedSeriesSequence
            for inst in series.ReferencedInstanceSequence
        ]
    referenced = {str(u) for _, _, u in seg.get_source_image_uids()}
    if not referenced & set(uids):
        raise TumorSegError(f"{Path(path).name} does not reference any of the given source slices")
    numbers = seg.get_pixels_by_source_instance(
        uids, combine_segments=True, relabel=False, assert_missing_frames_are_empty=True
    )
    labels = _value_lut(_segment_values(seg))[numbers]
    if source is not None and hasattr(source, "metadata"):
        from napari_tumorseg.io.orientation import from_source_order

        labels = from_source_order(labels, source)
    return labels
