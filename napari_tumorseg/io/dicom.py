"""DICOM reader: files, folders (recursive) and DICOMDIRs to one :class:`Volume` per series.

Two steps, so a widget can list a study before loading it:

* :func:`scan_dicom` reads headers only and groups every image frame by
  SeriesInstanceUID, then by geometry (orientation, matrix size, pixel spacing) so
  that files which disagree are split into separate stacks rather than mixed.
* :func:`load_dicom_series` reads the pixel data of one series, in the order of each
  slice's position along the slice normal (never file name or InstanceNumber), and
  applies the modality LUT (RescaleSlope/Intercept).

Geometry follows the DICOM patient frame (LPS); the Volume's affine is converted to
RAS (x and y negated) as the rest of the package expects.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from napari_tumorseg.errors import ReadError, first_line
from napari_tumorseg.io.nifti import is_label_name
from napari_tumorseg.io.volume import Volume

__all__ = [
    "DicomReference",
    "DicomSeries",
    "DicomWarning",
    "scan_dicom",
    "load_dicom_series",
    "read_dicom",
    "is_dicom_file",
    "folder_has_dicom",
]

DICOM_SUFFIXES = {".dcm", ".dicom", ".ima"}

# Objects that carry no image to show: skipped with a note. Matched on the SOP class
# name so that new variants of a family (e.g. every SR flavour) are caught too.
_NON_IMAGE_SOP_PATTERNS = (
    "SR Storage",
    "Structured Report",
    "RT Structure Set",
    "RT Plan",
    "RT Dose",  # a dose grid, not an MR/CT image; would need its own reader
    "RT Beams",
    "RT Ion",
    "Treatment Record",
    "Segmentation Storage",
    "Presentation State",
    "Key Object Selection",
    "Media Storage Directory",
    "Raw Data",
    "Encapsulated",
    "Waveform",
    "ECG",
    "Spatial Registration",
    "Deformable Spatial Registration",
    "Surface",
    "Real World Value Mapping",
)


_PIXEL_DATA = 0x7FE00010
_DEFER_BYTES = 4096  # values larger than this are not read while scanning

# Threads only for very large studies: on a warm page cache the header parse is GIL-bound,
# and a 4-thread pool doubled the CPU of scan + load (BRAINIX FLAIR, 22 files: 58 -> 28 ms;
# a 155-file series: 253 -> 119 ms; benchmarks/RESULTS_dicom.md). Thousands of files on a
# cold or network disk are where overlapping the reads can still pay.
_PARALLEL_MIN_FILES = 1000
_IO_THREADS = 4


class DicomWarning(UserWarning):
    """A series loaded, but something about its geometry deserves a look."""


@dataclass
class _Slice:
    """One 2D frame: a single-frame file, or one frame of a multi-frame file."""

    path: Path
    frame: int | None  # 0-based frame index in a multi-frame file
    position: tuple[float, float, float] | None  # ImagePositionPatient, LPS mm
    orientation: tuple[float, ...] | None  # ImageOrientationPatient (row, col cosines)
    pixel_spacing: tuple[float, float] | None  # (row spacing, column spacing) mm
    slope: float
    intercept: float
    sop_instance_uid: str
    instance_number: int | None
    # Distinguishes frames that share one position (echoes, time points).
    dup_key: tuple = ()


@dataclass
class _FileInfo:
    """What a series needs from one file's header; plain values only."""

    path: Path
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    sop_class_uid: str
    modality: str
    description: str
    series_number: int | None
    rows: int
    cols: int
    n_frames: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric: str
    transfer_syntax: str
    spacing_between_slices: float | None
    slice_thickness: float | None
    mask_hint: bool
    slices: list[_Slice]
    pixel_offset: int | None = None  # byte offset of native Pixel Data's value in the file
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DicomReference:
    """What an export needs to reference a loaded series (DICOM-SEG), in slice order.

    Carried on the Volume and its layers as ``metadata["dicom"]``. It holds no patient
    identifiers (no name, ID, birth date, study date): the SEG writer copies those from
    the source files themselves. Its repr shows no UIDs or paths, so a log line or a
    printed layer never leaks them.
    """

    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    sop_class_uid: str
    sop_instance_uids: tuple[str, ...]
    slice_files: tuple[str, ...]
    frame_numbers: tuple[int | None, ...] | None  # 1-based, multi-frame sources only
    modality: str = ""
    series_number: int | None = None
    series_description: str = ""

    def __repr__(self) -> str:
        return f"DicomReference({self.modality or 'DICOM'}, {len(self.slice_files)} slices)"


@dataclass
class DicomSeries:
    """One image series (or one consistent stack of it) found by :func:`scan_dicom`."""

    # UIDs and file paths stay out of the repr: a printed series must not identify anyone.
    series_uid: str = field(repr=False)
    study_uid: str = field(repr=False)
    frame_of_reference_uid: str = field(repr=False)
    description: str
    modality: str
    series_number: int | None
    files: list[Path] = field(repr=False)
    n_slices: int
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    is_mask: bool
    warnings: list[str]
    _slices: list[_Slice] = field(default_factory=list, repr=False)
    _infos: dict[Path, _FileInfo] = field(default_factory=dict, repr=False)
    _step: tuple[float, float, float] | None = field(default=None, repr=False)


# ---------------------------------------------------------------------------------
# cheap checks and file discovery


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True for a DICOMDIR name or a file with the "DICM" preamble at byte 128."""
    path = Path(path)
    if path.name.upper() == "DICOMDIR":
        return path.is_file()
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def looks_like_dicom(path: str | os.PathLike) -> bool:
    """True for :func:`is_dicom_file`, or a file written without the preamble (older
    scanners, some exports) whose first element is in group 0002 or 0008, either byte order."""
    if is_dicom_file(path):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    if 0 < len(head) < 132 and not head.strip(b"\0"):
        return True  # a DICOM file cut inside its (zero) preamble: the parser says "truncated"
    if len(head) < 8:
        return False
    groups = {int.from_bytes(head[:2], "little"), int.from_bytes(head[:2], "big")}
    return bool(groups & {0x0002, 0x0008})


def not_dicom_error(path: str | os.PathLike) -> ReadError:
    """The one line for a file that carries a DICOM name but is something else."""
    return ReadError(f"{Path(path).name}: not a DICOM file")


def folder_has_dicom(folder: str | os.PathLike, probe: int = 400) -> bool:
    """True when a DICOM file lies in ``folder`` or below (cheap: names first).

    A ``.dcm`` / ``.ima`` / DICOMDIR name decides at once; NIfTI and image files are passed
    over; at most ``probe`` other files have their preamble read before giving up.
    """
    from napari_tumorseg.io.images import is_image_path
    from napari_tumorseg.io.nifti import is_nifti_path

    looked = 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            p = Path(root) / name
            if name.upper() == "DICOMDIR" or p.suffix.lower() in DICOM_SUFFIXES:
                return is_dicom_file(p)
            if is_nifti_path(p) or is_image_path(p):
                continue
            if is_dicom_file(p):
                return True
            looked += 1
            if looked >= probe:
                return False
    return False


def _candidate_files(root: Path) -> tuple[list[Path], list[str]]:
    """Every file under ``root`` that may be DICOM; DICOMDIR indexes are left out
    because the walk finds the files they point to anyway."""
    found: list[Path] = []
    ignored = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if name.startswith(".") or name.upper().startswith("DICOMDIR"):
                continue
            if is_dicom_file(p) or p.suffix.lower() in DICOM_SUFFIXES:
                found.append(p)
            else:
                ignored += 1
    notes = [f"{ignored} non-DICOM file(s) ignored"] if ignored else []
    return found, notes


def _dicomdir_files(path: Path) -> tuple[list[Path], list[str]]:
    import pydicom
    from pydicom.fileset import FileSet

    try:
        fs = FileSet(pydicom.dcmread(path))
    except Exception as err:  # pydicom raises many types for a bad index
        raise ReadError(f"cannot read DICOMDIR {path}: {first_line(err)}") from err
    files, missing = [], []
    for inst in fs:
        p = Path(inst.path)
        (files if p.is_file() else missing).append(p)
    notes = []
    if missing:
        notes.append(
            f"DICOMDIR lists {len(missing)} file(s) that are missing, e.g. {missing[0].name}"
        )
    return files, notes


# ---------------------------------------------------------------------------------
# header parsing


def _floats(value, n: int | None = None) -> tuple[float, ...] | None:
    if value is None:
        return None
    seq = value if hasattr(value, "__iter__") and not isinstance(value, (str, bytes)) else [value]
    try:
        out = tuple(float(v) for v in seq)
    except (TypeError, ValueError):
        return None
    if n is not None and len(out) != n:
        return None
    if not all(np.isfinite(out)):
        return None
    return out


def _float(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _str(value) -> str:
    return "" if value is None else str(value).strip()


def _item(ds, *keywords):
    """First item of nested sequences, e.g. ``_item(fg, "PlanePositionSequence")``."""
    for kw in keywords:
        seq = getattr(ds, kw, None) if ds is not None else None
        if not seq:
            return None
        ds = seq[0]
    return ds


def _frame_attr(per_frame, shared, seq_kw: str, attr: str):
    """Per-frame functional group value, falling back to the shared group."""
    for group in (per_frame, shared):
        item = _item(group, seq_kw) if group is not None else None
        if item is not None and attr in item:
            return item.get(attr)
    return None


def _dup_key(h: "_Fields") -> tuple:
    keys = ("EchoNumbers", "TemporalPositionIdentifier", "AcquisitionNumber", "TriggerTime",
            "DiffusionBValue")
    return tuple(_sortable(h.text(k)) for k in keys)


def _sortable(text: str) -> tuple:
    """Numbers compare as numbers (echo 10 after echo 2), anything else as text."""
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


@functools.lru_cache(maxsize=256)
def _sop_class_name(uid: str) -> str:
    from pydicom.uid import UID

    try:
        return UID(uid).name
    except Exception:
        return uid


# Value representations whose bytes never depend on the character set (PS3.5 6.1.2: the
# default repertoire only), and binary integers: read straight from pydicom's raw element
# (what the parser found: VR, byte order, value bytes), which costs a tenth of a full
# conversion to a DataElement. Every other value (names, descriptions) is pydicom's.
_ASCII_VRS = frozenset({"AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"})
_BINARY_VRS = {"US": (2, False), "SS": (2, True), "UL": (4, False), "SL": (4, True)}


@functools.lru_cache(maxsize=None)
def _tag_and_vr(keyword: str) -> tuple[int, str]:
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    tag = tag_for_keyword(keyword)
    return int(tag), dictionary_VR(tag)


def _raw_text(elem, dict_vr: str) -> str | None:
    """The value of a raw (unconverted) element of an ASCII or binary VR as text, else None."""
    raw = getattr(elem, "value", None)
    if not isinstance(raw, bytes) or getattr(elem, "is_raw", False) is not True:
        return None
    vr = elem.VR or dict_vr
    if vr in _ASCII_VRS:
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:  # not what the standard allows: pydicom's decoding decides
            return None
        return "\\".join(v.strip(" \0") for v in text.split("\\")).strip()
    width_signed = _BINARY_VRS.get(vr)
    if width_signed is None:
        return None
    width, signed = width_signed
    order = "little" if elem.is_little_endian else "big"
    return "\\".join(str(int.from_bytes(raw[i:i + width], order, signed=signed))
                      for i in range(0, len(raw) - width + 1, width))


class _Fields:
    """Header values as plain str / int / float, decoded by pydicom (character set, VR,
    byte order; :func:`_raw_text` for the character-set-free ones); a value that cannot be
    decoded reads as absent."""

    def __init__(self, ds) -> None:
        self.ds = ds

    def text(self, keyword: str) -> str:
        try:
            tag, dict_vr = _tag_and_vr(keyword)
            elem = self.ds.get_item(tag) if tag in self.ds else None
            if elem is None:
                return ""
            fast = _raw_text(elem, dict_vr)
            if fast is not None:
                return fast
            value = self.ds.get(keyword)
        except Exception:  # noqa: BLE001 - one malformed value must not cost the file
            return ""
        if value is None:
            return ""
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            return "\\".join(str(v) for v in value)
        return str(value).strip()

    def int(self, keyword: str) -> int | None:
        t = self.text(keyword)
        try:
            return int(t) if t else None
        except ValueError:
            return _int(_float(t))

    def nums(self, keyword: str, n: int | None = None) -> tuple[float, ...] | None:
        t = self.text(keyword)
        return _floats([v for v in t.split("\\")], n) if t else None

    def num(self, keyword: str) -> float | None:
        v = self.nums(keyword)
        return v[0] if v else None


# The scan's fast path. A classic single-frame image keeps everything the scan needs in
# groups 0002-0028 (identity, geometry, pixel format, rescale); what follows - private groups,
# request and procedure details (BRAINIX: undefined-length sequences in group 0040) - is
# never parsed, and the Pixel Data element, the last one of such a file, is found from the
# file's end (its header checked byte for byte). Anything else
# (enhanced multi-frame, compressed or deflated pixels, trailing padding, a cut file) is parsed
# in full as before.
_LAST_SCANNED_GROUP = 0x0028
_SCAN_KEYWORDS = (
    "ImageType", "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
    "FrameOfReferenceUID", "Modality", "SeriesDescription", "SeriesNumber", "InstanceNumber",
    "AcquisitionNumber", "EchoNumbers", "TemporalPositionIdentifier", "TriggerTime",
    "DiffusionBValue", "SliceThickness", "SpacingBetweenSlices", "ImagePositionPatient",
    "ImageOrientationPatient", "PixelSpacing", "ImagerPixelSpacing", "Rows", "Columns",
    "NumberOfFrames", "SamplesPerPixel", "BitsAllocated", "BitsStored", "PixelRepresentation",
    "PhotometricInterpretation", "RescaleSlope", "RescaleIntercept",
)
_LITTLE_ENDIAN_NATIVE = {"1.2.840.10008.1.2": 8, "1.2.840.10008.1.2.1": 12}  # header bytes


@functools.lru_cache(maxsize=1)
def _scan_tags() -> list[int]:
    from pydicom.datadict import tag_for_keyword

    return [int(tag_for_keyword(k)) for k in _SCAN_KEYWORDS]


def _past_image_groups(tag, vr, length) -> bool:
    return tag >> 16 > _LAST_SCANNED_GROUP


def _trailing_pixels(fh, ds, size: int) -> int | None:
    """Offset of the native Pixel Data value that ends the file, or None when the file is
    not laid out that way (then it is parsed in full)."""
    meta = getattr(ds, "file_meta", None)
    ts = _str(getattr(meta, "TransferSyntaxUID", None)) if meta is not None else ""
    head = _LITTLE_ENDIAN_NATIVE.get(ts or "1.2.840.10008.1.2")
    if head is None or 0x00280008 in ds:  # not native little endian, or multi-frame
        return None
    h = _Fields(ds)
    rows, cols = h.int("Rows"), h.int("Columns")
    spp, bits = h.int("SamplesPerPixel") or 1, h.int("BitsAllocated") or 16
    if not rows or not cols or bits % 8:
        return None
    length = rows * cols * spp * bits // 8
    length += length & 1  # values have even lengths
    offset = size - length
    if offset - head < fh.tell():  # it would overlap what was parsed: cut or odd file
        return None
    fh.seek(offset - head)
    raw = fh.read(head)
    if len(raw) != head or raw[:4] != b"\xe0\x7f\x10\x00":
        return None
    if head == 12 and raw[4:8] not in (b"OW\0\0", b"OB\0\0"):
        return None
    return offset if int.from_bytes(raw[-4:], "little") == length else None


def _read_header(path: Path) -> _FileInfo | str:
    """Parse one file's header; returns a note string when it is not a usable image."""
    import pydicom
    from pydicom.filereader import read_partial

    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            # force: the caller already chose this file (preamble, suffix or by name).
            ds = read_partial(fh, stop_when=_past_image_groups, defer_size=_DEFER_BYTES, force=True,
                              specific_tags=_scan_tags())
            offset = _trailing_pixels(fh, ds, size)
            if offset is None:
                # Large values (the pixels) are deferred: pydicom records where they start,
                # so the load decodes them without parsing the header again.
                fh.seek(0)
                ds = pydicom.dcmread(fh, defer_size=_DEFER_BYTES, force=True)
    except Exception as err:
        return f"unreadable ({first_line(err)}): {path.name}"
    try:
        return _info_from_dataset(path, ds, size, offset)
    except Exception as err:  # a header that parses but whose values are garbage
        return f"unreadable ({first_line(err)}): {path.name}"


def _info_from_dataset(path: Path, ds, size: int, trailing: int | None = None) -> _FileInfo | str:
    from pydicom.uid import UID

    h = _Fields(ds)
    meta_ds = getattr(ds, "file_meta", None)
    sop_class = h.text("SOPClassUID") or _str(getattr(meta_ds, "MediaStorageSOPClassUID", None))
    sop_name = _sop_class_name(sop_class) if sop_class else "unknown object"
    if sop_class and any(p.lower() in sop_name.lower() for p in _NON_IMAGE_SOP_PATTERNS):
        return f"skipped non-image object ({sop_name}): {path.name}"
    rows, cols = h.int("Rows"), h.int("Columns")
    if not rows or not cols:
        if not sop_class:
            return f"unreadable (no DICOM image attributes): {path.name}"
        return f"incomplete header without an image size ({sop_name}): {path.name}"
    series_uid = h.text("SeriesInstanceUID")
    n_frames = h.int("NumberOfFrames") or 1
    spp = h.int("SamplesPerPixel") or 1
    bits_alloc = h.int("BitsAllocated") or 16
    bits_stored = h.int("BitsStored") or bits_alloc
    ts = _str(getattr(meta_ds, "TransferSyntaxUID", None)) or "1.2.840.10008.1.2"

    # A file cut off inside its pixel data: caught here so it becomes a note rather
    # than a failed load later.
    pixels = ds.get_item(_PIXEL_DATA, keep_deferred=True) if _PIXEL_DATA in ds else None
    if pixels is None and trailing is None:
        return f"no pixel data: {path.name}"
    offset = getattr(pixels, "value_tell", None) if trailing is None else trailing
    if trailing is not None:
        pass  # found at the file's end with its exact length: complete
    elif UID(ts).is_deflated:
        offset = None  # a position in the inflated stream, not in the file: pydicom reads it
    elif offset is not None and not UID(ts).is_compressed and bits_alloc % 8 == 0:
        expected = rows * cols * n_frames * spp * bits_alloc // 8
        available = min(size - offset, pixels.length)
        if available < expected:
            return f"truncated ({max(available, 0)} of {expected} bytes of pixel data): {path.name}"

    description = h.text("SeriesDescription")
    modality = h.text("Modality")
    series_number = h.int("SeriesNumber")
    # A mask/ROI export says so in its description (OsiriX "FLAIR_ROI") or ImageType.
    mask_hint = is_label_name(description) or is_label_name(h.text("ImageType"))

    slices = _slices_of(path, ds, h, n_frames)
    sbs = h.num("SpacingBetweenSlices")
    thick = h.num("SliceThickness")
    if n_frames > 1 or 0x52009229 in ds:
        shared = _item(ds, "SharedFunctionalGroupsSequence")
        if sbs is None:
            sbs = _float(_frame_attr(None, shared, "PixelMeasuresSequence", "SpacingBetweenSlices"))
        if thick is None:
            thick = _float(_frame_attr(None, shared, "PixelMeasuresSequence", "SliceThickness"))

    return _FileInfo(
        path=path,
        series_uid=series_uid,
        study_uid=h.text("StudyInstanceUID"),
        frame_of_reference_uid=h.text("FrameOfReferenceUID"),
        sop_class_uid=sop_class,
        modality=modality,
        description=description,
        series_number=series_number,
        rows=rows,
        cols=cols,
        n_frames=n_frames,
        samples_per_pixel=spp,
        bits_allocated=bits_alloc,
        bits_stored=bits_stored,
        pixel_representation=h.int("PixelRepresentation") or 0,
        photometric=h.text("PhotometricInterpretation") or "MONOCHROME2",
        transfer_syntax=ts,
        spacing_between_slices=sbs,
        slice_thickness=thick,
        mask_hint=mask_hint,
        slices=slices,
        pixel_offset=offset if not UID(ts).is_compressed else None,
    )


def _slices_of(path: Path, ds, h: _Fields, n_frames: int) -> list[_Slice]:
    sop_uid = h.text("SOPInstanceUID")
    inst = h.int("InstanceNumber")
    slope = h.num("RescaleSlope")
    intercept = h.num("RescaleIntercept")
    pixel_spacing = h.nums("PixelSpacing", 2) or h.nums("ImagerPixelSpacing", 2)
    position = h.nums("ImagePositionPatient", 3)
    orientation = h.nums("ImageOrientationPatient", 6)
    if n_frames == 1 and 0x52009230 not in ds:
        return [
            _Slice(path, None, position, orientation, pixel_spacing,
                   1.0 if slope is None else slope, 0.0 if intercept is None else intercept,
                   sop_uid, inst, _dup_key(h))
        ]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = _item(ds, "SharedFunctionalGroupsSequence")

    out = []
    for i in range(n_frames):
        pf = per_frame[i] if per_frame is not None and i < len(per_frame) else None
        pos = _floats(_frame_attr(pf, shared, "PlanePositionSequence", "ImagePositionPatient"), 3)
        ori = _floats(_frame_attr(pf, shared, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
        ps = _floats(_frame_attr(pf, shared, "PixelMeasuresSequence", "PixelSpacing"), 2)
        s = _float(_frame_attr(pf, shared, "PixelValueTransformationSequence", "RescaleSlope"))
        b = _float(_frame_attr(pf, shared, "PixelValueTransformationSequence", "RescaleIntercept"))
        content = _item(pf, "FrameContentSequence") if pf is not None else None
        dims = content.get("DimensionIndexValues") if content is not None else None
        dims = tuple(dims) if isinstance(dims, (list, tuple)) or hasattr(dims, "__len__") else (dims,)
        stack = _str(content.get("StackID")) if content is not None else ""
        echo = _frame_attr(pf, shared, "MREchoSequence", "EffectiveEchoTime")
        temporal = _str(content.get("TemporalPositionIndex")) if content is not None else ""
        out.append(
            _Slice(
                path, i,
                pos or (position if i == 0 else None),
                ori or orientation,
                ps or pixel_spacing,
                s if s is not None else (1.0 if slope is None else slope),
                b if b is not None else (0.0 if intercept is None else intercept),
                sop_uid, inst,
                (_sortable(stack), _sortable(_str(echo)), _sortable(temporal),
                 tuple(_sortable(str(d)) for d in dims)),
            )
        )
    return out


def _read_headers(paths: list[Path]) -> list[_FileInfo | str]:
    # Header parsing is pure Python (GIL-bound), but threads still overlap the file
    # opens and reads when the study sits on a slow or cold disk.
    if len(paths) < _PARALLEL_MIN_FILES:
        return [_read_header(p) for p in paths]
    with ThreadPoolExecutor(_IO_THREADS) as pool:
        return list(pool.map(_read_header, paths))


# ---------------------------------------------------------------------------------
# grouping and ordering


def _geometry_key(s: _Slice, info: _FileInfo) -> tuple:
    ori = tuple(round(v, 3) for v in s.orientation) if s.orientation else None
    ps = tuple(round(v, 4) for v in s.pixel_spacing) if s.pixel_spacing else None
    return (info.rows, info.cols, ori, ps, info.samples_per_pixel)


def _normal(orientation: tuple[float, ...] | None) -> np.ndarray:
    if orientation is None:
        return np.array([0.0, 0.0, 1.0])
    o = np.asarray(orientation, float)
    n = np.cross(o[:3], o[3:])
    norm = np.linalg.norm(n)
    return n / norm if norm > 1e-6 else np.array([0.0, 0.0, 1.0])


def _split_duplicates(slices: list[_Slice], dist: np.ndarray) -> list[list[int]]:
    """Indices of each stack when several frames share one position (echoes, time
    points): the k-th frame at every position goes to stack k."""
    groups: dict[float, list[int]] = defaultdict(list)
    for i, d in enumerate(dist):
        groups[round(float(d), 2)].append(i)
    if all(len(v) == 1 for v in groups.values()):
        return [list(range(len(slices)))]
    k = max(len(v) for v in groups.values())
    stacks: list[list[int]] = [[] for _ in range(k)]
    for members in groups.values():
        members.sort(key=lambda i: (slices[i].dup_key, slices[i].instance_number or 0,
                                    slices[i].frame or 0, str(slices[i].path)))
        for rank, i in enumerate(members):
            stacks[rank].append(i)
    return stacks


def _spacing_and_warnings(
    slices: list[_Slice], dist: np.ndarray, info: _FileInfo
) -> tuple[float, tuple[float, float, float] | None, list[str]]:
    """Slice spacing (mm), the per-slice step vector for the affine (LPS), warnings."""
    warns: list[str] = []
    n = len(slices)
    normal = _normal(slices[0].orientation)
    if n == 1:
        dz = info.spacing_between_slices or info.slice_thickness or 1.0
        return float(dz), tuple(normal * dz), warns
    diffs = np.diff(dist)
    med = float(np.median(diffs))
    if med <= 1e-6:
        warns.append("slices share one position: spacing 1 mm assumed")
        return 1.0, tuple(normal), warns
    tol = max(0.05 * med, 0.01)
    big = np.nonzero(diffs > med + tol)[0]
    small = np.nonzero(diffs < med - tol)[0]
    for i in big:
        missing = int(round(diffs[i] / med)) - 1
        extra = f"; about {missing} slice(s) missing" if missing >= 1 else ""
        warns.append(
            f"gap of {diffs[i]:.2f} mm between slices {i} and {i + 1} "
            f"(usual spacing {med:.2f} mm){extra}"
        )
    if len(small):
        warns.append(
            f"uneven slice spacing: {len(small)} step(s) shorter than the usual {med:.2f} mm "
            f"(smallest {diffs.min():.2f} mm)"
        )
    p = np.array([s.position for s in slices], float)
    if len(big) or len(small):
        step = normal * med
    else:
        step = (p[-1] - p[0]) / (n - 1)
        inplane = step - normal * np.dot(step, normal)
        if np.linalg.norm(inplane) > max(0.01, 1e-3 * med):
            warns.append(
                f"slice positions drift in-plane by {np.linalg.norm(inplane):.2f} mm per slice "
                "(gantry tilt?); the affine keeps the shear"
            )
    return med, tuple(step), warns


def _build_series(
    stack: list[_Slice], infos: dict[Path, _FileInfo], label: str, extra: list[str]
) -> DicomSeries:
    info = infos[stack[0].path]
    warns = list(extra)
    if not info.series_uid:
        warns.append("no SeriesInstanceUID: files grouped by folder, series number and description")
    has_geom = all(s.position is not None and s.orientation is not None for s in stack)
    if has_geom:
        normal = _normal(stack[0].orientation)
        dist = np.array([np.dot(np.asarray(s.position), normal) for s in stack])
        order = np.argsort(dist, kind="stable")
        stack = [stack[i] for i in order]
        dist = dist[order]
        dz, step, w = _spacing_and_warnings(stack, dist, info)
        warns += w
    else:
        if len(stack) > 1:
            # Without positions there is nothing geometric to sort by; InstanceNumber
            # (then frame index) is the only remaining order, and we say so.
            stack = sorted(stack, key=lambda s: (s.instance_number or 0, s.frame or 0, str(s.path)))
            warns.append("no ImagePositionPatient/ImageOrientationPatient: slices ordered "
                         "by InstanceNumber, geometry unknown")
        else:
            warns.append("no patient geometry (position/orientation): axis-aligned affine assumed")
        dz = info.spacing_between_slices or info.slice_thickness or 1.0
        step = None
    ps = stack[0].pixel_spacing
    if ps is None:
        warns.append("no PixelSpacing: 1 mm pixels assumed")
        ps = (1.0, 1.0)
    files: list[Path] = []
    seen = set()
    for s in stack:
        if s.path not in seen:
            seen.add(s.path)
            files.append(s.path)
    description = info.description or f"{info.modality or 'DICOM'} {info.series_number or ''}".strip()
    return DicomSeries(
        series_uid=info.series_uid,
        study_uid=info.study_uid,
        frame_of_reference_uid=info.frame_of_reference_uid,
        description=description + label,
        modality=info.modality,
        series_number=info.series_number,
        files=files,
        n_slices=len(stack),
        shape=(len(stack), info.rows, info.cols),
        spacing=(float(dz), float(ps[0]), float(ps[1])),
        is_mask=any(infos[p].mask_hint for p in files),
        warnings=warns,
        _slices=stack,
        _infos={p: infos[p] for p in files},
        _step=step,
    )


def _group(infos: list[_FileInfo]) -> list[DicomSeries]:
    by_uid: dict[str, list[_Slice]] = defaultdict(list)
    info_of: dict[Path, _FileInfo] = {}
    for info in infos:
        info_of[info.path] = info
        # Files without a SeriesInstanceUID (non-conformant exports) are grouped by
        # folder, series number and description, the best remaining evidence.
        key = info.series_uid or (
            f"<no uid> {info.path.parent} {info.series_number} {info.description}"
        )
        by_uid[key].extend(info.slices)

    out: list[DicomSeries] = []
    for uid, all_slices in by_uid.items():
        # The same instance found twice (a copy, or a DICOMDIR export beside its
        # source) is one slice, not an echo or a time point.
        seen: set[tuple[str, int | None]] = set()
        slices = []
        for s in all_slices:
            key = (s.sop_instance_uid, s.frame)
            if s.sop_instance_uid and key in seen:
                continue
            seen.add(key)
            slices.append(s)
        dropped = len(all_slices) - len(slices)
        # Files whose orientation or matrix disagree are never mixed into one array.
        geo: dict[tuple, list[_Slice]] = defaultdict(list)
        for s in slices:
            geo[_geometry_key(s, info_of[s.path])].append(s)
        # Deterministic order of the geometry groups whatever order the files were
        # found in; the stacks split off one group keep their echo/time order.
        groups = sorted(geo.values(), key=lambda members: min(
            (s.instance_number if s.instance_number is not None else 1 << 30, s.frame or 0,
             s.sop_instance_uid) for s in members))
        parts: list[list[_Slice]] = []
        for members in groups:
            if all(s.position is not None and s.orientation is not None for s in members):
                normal = _normal(members[0].orientation)
                dist = np.array([np.dot(np.asarray(s.position), normal) for s in members])
                parts += [[members[i] for i in idx] for idx in _split_duplicates(members, dist)]
            else:
                parts.append(members)
        note: list[str] = []
        if dropped:
            note.append(f"{dropped} duplicate copies of the same instances ignored")
        if len(geo) > 1:
            note.append(f"series {uid} mixes {len(geo)} orientations/matrix sizes: "
                        f"split into {len(parts)} stacks")
        elif len(parts) > 1:
            note.append(f"series {uid} has {len(parts)} frames per position "
                        f"(echoes/time points): split into {len(parts)} stacks")
        for i, part in enumerate(parts):
            label = f" [{i + 1}/{len(parts)}]" if len(parts) > 1 else ""
            out.append(_build_series(part, info_of, label, note))
    out.sort(key=lambda s: (s.study_uid, s.series_number if s.series_number is not None else 1 << 30,
                            s.description, s.series_uid))
    return out


def _summarise_notes(notes: Iterable[str]) -> list[str]:
    """Collapse notes that differ only in the file name ("skipped non-image object
    (RT Plan): a.dcm" x 300) into one counted line."""
    groups: dict[str, list[str]] = defaultdict(list)
    out: list[str] = []
    for note in notes:
        if ": " in note:
            reason, name = note.rsplit(": ", 1)
            if not groups[reason]:
                out.append(reason)
            groups[reason].append(name)
        else:
            out.append(note)
    return [
        (f"{n}: {len(groups[n])} files, e.g. {groups[n][0]}" if len(groups[n]) > 1
         else f"{n}: {groups[n][0]}") if n in groups else n
        for n in out
    ]


def scan_dicom(path: str | os.PathLike) -> tuple[list[DicomSeries], list[str]]:
    """Find the image series under ``path`` (file, folder searched recursively, or
    DICOMDIR) from headers only. Returns the series and notes about what was skipped.

    Raises ReadError when nothing readable is found.
    """
    path = Path(path)
    if not path.exists():
        raise ReadError(f"{path} does not exist")
    notes: list[str] = []
    if path.is_dir():
        files, notes = _candidate_files(path)
        if not files:
            raise ReadError(f"no DICOM files found in {path}")
    elif path.name.upper().startswith("DICOMDIR"):
        files, notes = _dicomdir_files(path)
        if not files:
            raise ReadError(f"DICOMDIR {path} lists no readable files")
    else:
        if not looks_like_dicom(path):
            raise not_dicom_error(path)
        files = [path]

    infos: list[_FileInfo] = []
    dropped: list[tuple[Path, str]] = []
    for file, res in zip(files, _read_headers(files)):
        if isinstance(res, str):
            notes.append(res)
            if res.startswith(_DROPPED_SLICE):
                dropped.append((file, res))
        else:
            infos.append(res)
    notes = _summarise_notes(notes)
    if not infos:
        reason = notes[0] if notes else "no image objects"
        raise ReadError(f"no readable DICOM image series in {path}: {reason}")
    series = _group(infos)
    _attach_dropped(series, dropped)
    return series, notes


# Notes of files that look like slices of a series but could not be used: the series
# they sit beside names them, so a slice gap comes with the file that caused it.
_DROPPED_SLICE = ("truncated", "no pixel data", "unreadable")


def _attach_dropped(series: list[DicomSeries], dropped: list[tuple[Path, str]]) -> None:
    for s in series:
        folders = {f.parent for f in s.files}
        for file, note in dropped:
            if file.parent in folders:
                # The note ends with the file name only: folder paths are the user's, and
                # no header value (names, IDs, dates) goes into a message.
                s.warnings.append(f"left out {note}")


# ---------------------------------------------------------------------------------
# pixel data


def _file_frames(info: _FileInfo) -> np.ndarray:
    """All frames of one file, decoded by pydicom (byte order, BitsStored, any transfer
    syntax it has a decoder for). Native pixels are decoded from the offset the scan
    recorded, so the header is not parsed a second time."""
    import pydicom
    from pydicom.pixels import get_decoder

    try:
        if info.pixel_offset is not None and info.samples_per_pixel == 1:
            with open(info.path, "rb") as fh:
                fh.seek(info.pixel_offset)
                arr, _ = get_decoder(info.transfer_syntax).as_array(
                    fh, rows=info.rows, columns=info.cols, number_of_frames=info.n_frames,
                    samples_per_pixel=1, bits_allocated=info.bits_allocated,
                    bits_stored=info.bits_stored, pixel_representation=info.pixel_representation,
                    photometric_interpretation=info.photometric, pixel_keyword="PixelData")
        else:
            arr = pydicom.dcmread(info.path, force=True).pixel_array
    except Exception as err:
        raise ReadError(f"cannot read pixel data of {info.path.name}: {first_line(err)}") from err
    if info.samples_per_pixel > 1:
        # An RGB-stored scan (secondary capture); the volume model is single-channel.
        arr = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return arr.reshape(info.n_frames, info.rows, info.cols)


def _stored_range(info: _FileInfo) -> tuple[float, float]:
    bits = min(info.bits_stored, info.bits_allocated)
    if info.pixel_representation == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0 ** bits - 1


def _output_dtype(infos: list[_FileInfo], slopes: np.ndarray, intercepts: np.ndarray) -> np.dtype | None:
    """dtype after the modality LUT, or None when it is the identity. Decided from the
    headers (stored bit range), so every slice can be written into place as it is read."""
    if np.all(slopes == 1) and np.all(intercepts == 0):
        return None
    integral = np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts))
    if not integral or any(i.samples_per_pixel > 1 for i in infos):
        return np.dtype(np.float32)
    lo = min(_stored_range(i)[0] for i in infos)
    hi = max(_stored_range(i)[1] for i in infos)
    ends = [v * s + b for v in (lo, hi) for s in (slopes.min(), slopes.max())
            for b in (intercepts.min(), intercepts.max())]
    for dt in (np.uint8, np.uint16, np.int16, np.int32) if min(ends) >= 0 else (np.int16, np.int32):
        if np.iinfo(dt).min <= min(ends) and max(ends) <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.float64)


def load_dicom_series(
    series: DicomSeries, progress: Callable[[int, int], None] | None = None
) -> Volume:
    """Read one series found by :func:`scan_dicom` into a (z, y, x) Volume.

    Raises ReadError when a file of the series cannot be decoded.
    """
    slices = series._slices
    if not slices:
        raise ReadError(f"series {series.description!r} has no slices")
    total = len(slices)
    where: dict[Path, list[tuple[int, int]]] = defaultdict(list)  # file -> (z, frame)
    for z, s in enumerate(slices):
        where[s.path].append((z, s.frame or 0))
    files = list(where)
    infos = [series._infos[p] for p in files]

    slopes = np.array([s.slope for s in slices], float)
    intercepts = np.array([s.intercept for s in slices], float)
    dtype = _output_dtype(infos, slopes, intercepts)
    if dtype is None and all(i.samples_per_pixel == 1 and i.bits_allocated in (8, 16, 32) for i in infos):
        # the stored type of every file, so a signed file after an unsigned one fits
        dtype = np.result_type(*{
            np.dtype(f"{'i' if i.pixel_representation == 1 else 'u'}{i.bits_allocated // 8}")
            for i in infos})
    out: np.ndarray | None = None
    done = 0

    def read(path: Path) -> np.ndarray:
        return _file_frames(series._infos[path])

    def place(path: Path, frames: np.ndarray) -> None:
        nonlocal out, done
        if out is None:
            out = np.empty((total,) + frames.shape[1:], dtype=dtype or frames.dtype)
        if frames.shape[1:] != out.shape[1:]:
            raise ReadError(f"{path.name}: frame size {frames.shape[1:]} differs from the series")
        for z, f in where[path]:
            out[z] = frames[f]
            if slopes[z] != 1 or intercepts[z] != 0:
                # in place, in the output dtype: no float64 copy of the whole volume
                if dtype.kind == "f":
                    out[z] *= dtype.type(slopes[z])
                    out[z] += dtype.type(intercepts[z])
                else:
                    out[z] *= int(slopes[z])
                    out[z] += int(intercepts[z])
        done += len(where[path])
        if progress:
            progress(done, total)

    if len(files) >= _PARALLEL_MIN_FILES:
        # Raw reads release the GIL, so threads overlap disk waits; results come
        # back here in order, so placing and progress stay on the calling thread.
        with ThreadPoolExecutor(_IO_THREADS) as pool:
            for path, frames in zip(files, pool.map(read, files)):
                place(path, frames)
    else:
        for path in files:
            place(path, read(path))
    data = out

    warns = list(series.warnings)
    kind = "image"
    if series.is_mask:
        kind, data, w = _as_labels(data)
        warns += w
    affine = _affine(series, slices)
    info = series._infos[slices[0].path]
    meta_dicom = _dicom_metadata(series, slices, info)
    for w in warns:
        warnings.warn(f"{series.description}: {w}", DicomWarning, stacklevel=2)
    return Volume(
        data=data,
        spacing=series.spacing,
        affine=affine,
        name=series.description,
        kind=kind,
        modality=series.modality,
        source=[str(p) for p in series.files],
        metadata={"dicom": meta_dicom, "warnings": warns},
    )


def _as_labels(data: np.ndarray) -> tuple[str, np.ndarray, list[str]]:
    """A mask series becomes uint8/uint16 labels; values that cannot be labels keep it
    an image, with a warning, rather than being silently rounded."""
    if data.dtype.kind == "f" and not np.all(np.isfinite(data) & (data == np.round(data))):
        return "image", data, ["marked as a mask but holds non-integer values: loaded as an image"]
    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    if lo < 0 or hi > 65535:
        return "image", data, ["marked as a mask but values are outside 0..65535: loaded as an image"]
    dt = np.uint8 if hi <= 255 else np.uint16
    return "labels", data.astype(dt, copy=False), []


def series_affine(series: DicomSeries) -> np.ndarray:
    """The (z, y, x) -> RAS affine a series will load with, from its headers alone."""
    return _affine(series, series._slices)


def _affine(series: DicomSeries, slices: list[_Slice]) -> np.ndarray:
    """4x4 from (z, y, x, 1) indices to RAS mm."""
    s0 = slices[0]
    if s0.position is None or s0.orientation is None:
        from napari_tumorseg.io.volume import affine_from_spacing

        return affine_from_spacing(series.spacing)
    o = np.asarray(s0.orientation, float)
    dy, dx = series.spacing[1], series.spacing[2]
    a = np.eye(4)
    a[:3, 2] = o[:3] * dx  # column index runs along the row direction cosine
    a[:3, 1] = o[3:] * dy
    step = series._step if series._step is not None else _normal(s0.orientation) * series.spacing[0]
    a[:3, 0] = step
    a[:3, 3] = s0.position
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    return lps_to_ras @ a


def _dicom_metadata(series: DicomSeries, slices: list[_Slice], info: _FileInfo) -> "DicomReference":
    multi = any(s.frame is not None for s in slices)
    return DicomReference(
        study_uid=series.study_uid,
        series_uid=series.series_uid,
        frame_of_reference_uid=series.frame_of_reference_uid,
        sop_class_uid=info.sop_class_uid,
        sop_instance_uids=tuple(s.sop_instance_uid for s in slices),
        slice_files=tuple(str(s.path) for s in slices),
        # 1-based frame numbers, as DICOM's ReferencedFrameNumber wants them.
        frame_numbers=tuple(None if s.frame is None else s.frame + 1 for s in slices) if multi else None,
        modality=series.modality,
        series_number=series.series_number,
        series_description=info.description,
    )


def read_dicom(path: str | os.PathLike) -> list[Volume]:
    """Scan ``path`` and load every image series in it, one Volume each."""
    series, notes = scan_dicom(path)
    for note in notes:
        warnings.warn(note, DicomWarning, stacklevel=2)
    volumes, failures = [], []
    for s in series:
        try:
            volumes.append(load_dicom_series(s))
        except ReadError as err:
            failures.append(str(err))
    if not volumes:
        raise ReadError(failures[0] if failures else f"no DICOM image series in {path}")
    for f in failures:
        warnings.warn(f, DicomWarning, stacklevel=2)
    return volumes
