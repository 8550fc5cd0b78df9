"""NIfTI (.nii / .nii.gz) reading with nibabel, in the package's (z, y, x) convention.

nibabel stores voxels as (i, j, k[, t]) with i the fastest axis in the file, which is
x in the usual radiological sense. We transpose to (z, y, x) = (k, j, i) and permute
the affine's columns the same way, so ``Volume.affine @ (z, y, x, 1)`` gives the very
RAS+ millimetre position nibabel gives for ``(i, j, k, 1)``. The permutation is its
own inverse, which is what export.nifti relies on to write files back unchanged.

Also home of the "is this a label map?" heuristics shared with the 2D image readers. A
NIfTI file is a label map when its header says so (intent NIFTI_INTENT_LABEL, which
export.nifti writes for masks), when its name says so (seg, truth, mask...), or from its
content: an integer array with few distinct non-negative values (a mask saved by another
tool as "result.nii.gz" must not open as an opaque grey image).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from napari_tumorseg.errors import ReadError, first_line
from napari_tumorseg.io.volume import Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")

# Columns of a nibabel affine (i, j, k, translation) reordered to (k, j, i, translation).
_PERMUTE = [2, 1, 0, 3]

# Words that name a label map in a file, folder or series name (BraTS "_seg", "truth",
# "OTMultiClass", OsiriX "FLAIR_ROI", LGG "_mask", "brainmask", "_gt"). Matched on whole
# words, word starts ("segmentation", "labelmap") or the "mask" ending, so words that only
# contain the letters ("regions", "T2 TSE") are not labels.
_LABEL_WORDS = {"seg", "truth", "gt", "roi", "rois", "otmulticlass"}
_LABEL_PREFIXES = ("segment", "label", "annot", "groundtruth")
_LABEL_SUFFIXES = ("mask", "masks")
# Above this many distinct values an integer array is an image, whatever its name.
MAX_LABEL_VALUES = 64

_SEQUENCES = [
    # Order matters: "t1c" before "t1", "flair"/"t2f" before "t2".
    ("FLAIR", re.compile(r"flair|t2f(?![a-z])", re.IGNORECASE)),
    ("T1c", re.compile(r"t1[-_ ]?(c|ce|gd|post|contrast)(?![a-z])|t1c", re.IGNORECASE)),
    ("T1", re.compile(r"t1(?![0-9])|t1n(?![a-z])", re.IGNORECASE)),
    ("T2", re.compile(r"t2(?![0-9])|t2w(?![a-z])", re.IGNORECASE)),
]


def is_nifti_path(path: str | Path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: str | Path) -> str:
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def guess_sequence(name: str) -> str:
    """MR sequence named in a file or series name ("FLAIR", "T1", "T1c", "T2"), or ""."""
    for sequence, pattern in _SEQUENCES:
        if pattern.search(name):
            return sequence
    return ""


def sequence_of(volume_or_name) -> str:
    """The MR sequence ("FLAIR", "T1", "T1c", "T2") of a volume (its metadata's, else its
    name's) or of a name, or ""."""
    if isinstance(volume_or_name, Volume):
        seq = volume_or_name.metadata.get("sequence") if isinstance(volume_or_name.metadata, dict) else None
        return str(seq or guess_sequence(volume_or_name.name))
    return guess_sequence(str(volume_or_name))


def is_label_name(name: str) -> bool:
    """True when a file, folder or series name says it holds a label map (a mask)."""
    # Words split at separators, and again at lower-to-upper case changes ("tumourSeg").
    name = str(name)
    camel = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    words = set(re.split(r"[^a-z0-9]+", name.lower())) | set(re.split(r"[^a-z0-9]+", camel.lower()))
    return any(w in _LABEL_WORDS or w.startswith(_LABEL_PREFIXES) or w.endswith(_LABEL_SUFFIXES)
               for w in words if w)


def as_labels(data: np.ndarray) -> np.ndarray | None:
    """``data`` as an unsigned label array when it holds few integer values, else None.

    Float-stored label maps (BraTS 2013 OTMultiClass is float32) qualify when every
    value is within 1e-3 of a whole number. A 0/255 mask becomes 0/1 so label 1 is the object.
    """
    if data.dtype == bool:
        return data.astype(np.uint8)
    if data.dtype.kind not in "uif":
        return None
    if data.dtype.kind == "f":
        # Scaled integer storage (brainmask.nii.gz: int32 * 2.3e-10 + 0.5) lands a hair
        # off the whole numbers it encodes.
        rounded = np.round(data)
        if not np.all(np.isfinite(data)) or np.abs(data - rounded).max(initial=0) > 1e-3:
            return None
        data = rounded
    values = np.unique(data)
    if len(values) > MAX_LABEL_VALUES or (len(values) and values[0] < 0):
        return None
    if set(values.tolist()) <= {0, 255} and 255 in values:
        return (data == 255).astype(np.uint8)
    top = int(values[-1]) if len(values) else 0
    dtype = np.uint8 if top < 256 else np.uint16 if top < 65536 else np.uint32
    return data.astype(dtype, copy=False)


_NIFTI_INTENT_LABEL = 1002
#: Key of this plugin's JSON in a NIfTI comment extension (code 6): a label map's names.
EXTENSION_KEY = "napari_tumorseg"
# Content alone (no name, no intent): at most this many distinct values.
MAX_CONTENT_LABEL_VALUES = 32


def looks_like_labels(data: np.ndarray) -> bool:
    """An integer array with few distinct non-negative values (cheap for images: the value
    range rules most of them out before anything is counted)."""
    if data.dtype == bool:
        return True
    if data.dtype.kind not in "ui" or data.size == 0:
        return False
    lo, hi = int(data.min()), int(data.max())
    if lo < 0 or hi > 65535:
        return False
    counts = np.bincount(data.ravel().astype(np.int64, copy=False), minlength=1)
    return int(np.count_nonzero(counts)) <= MAX_CONTENT_LABEL_VALUES


def _load(path: Path):
    import nibabel as nib

    try:
        return nib.load(str(path))
    except FileNotFoundError:
        raise ReadError(f"{path}: no such file") from None
    except Exception as err:  # nibabel raises many types for damaged files
        raise ReadError(f"{path.name}: not a readable NIfTI file ({first_line(err, 120)})") from None


def nifti_affine_to_zyx(affine: np.ndarray) -> np.ndarray:
    """nibabel (i, j, k) affine -> Volume affine for (z, y, x) indices (and back)."""
    return np.asarray(affine, dtype=float)[:, _PERMUTE]


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """(z, y, x) voxel size in mm: norms of the first three affine columns."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


def _expected_bytes(img) -> int:
    header = img.header
    n = int(np.prod(img.shape)) if img.shape else 0
    return int(header.get_data_offset()) + n * header.get_data_dtype().itemsize


def _check_complete(path: Path, img) -> None:
    """Raise ReadError for a truncated file, without reading its voxels where possible.

    An uncompressed file must be at least header + voxels long. A gzip file ends with
    the uncompressed size mod 2**32 (ISIZE); when that does not match (truncation, or a
    legitimate multi-member gzip) the stream is decompressed once to decide.
    """
    import gzip
    import zlib

    expected = _expected_bytes(img)
    size = path.stat().st_size
    if not path.name.lower().endswith(".gz"):
        if size < expected:
            raise ReadError(f"{path.name}: truncated NIfTI file ({size} of {expected} bytes)")
        return
    if size >= 4:
        with open(path, "rb") as fh:
            fh.seek(-4, 2)
            if int.from_bytes(fh.read(4), "little") == expected % 2**32:
                return
    total = 0
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                total += len(chunk)
    except (OSError, EOFError, zlib.error) as err:
        raise ReadError(f"{path.name}: damaged NIfTI file ({first_line(err, 120)})") from None
    if total < expected:
        raise ReadError(f"{path.name}: truncated NIfTI file ({total} of {expected} bytes)")


def header_info(path: str | Path) -> dict:
    """Shape (z, y, x), channels, spacing, dtype and name from the header only."""
    path = Path(path)
    img = _load(path)
    _check_complete(path, img)
    shape = tuple(int(s) for s in img.shape)
    if len(shape) < 2 or len(shape) > 4 and any(s != 1 for s in shape[4:]):
        raise ReadError(f"{path.name}: {len(shape)}-D NIfTI is not supported")
    spatial = (shape + (1, 1))[:3]
    channels = shape[3] if len(shape) >= 4 else 0
    affine = nifti_affine_to_zyx(img.affine)
    return {
        "shape": spatial[::-1],
        "channels": channels,
        "spacing": spacing_from_affine(affine),
        "dtype": img.get_data_dtype(),
        "name": nifti_stem(path),
        "image": img,
    }


def read_nifti(path: str | Path) -> Volume:
    """Read a .nii / .nii.gz file into a (z, y, x) or (c, z, y, x) Volume with its affine."""
    path = Path(path)
    info = header_info(path)
    img = info["image"]
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as err:
        raise ReadError(f"{path.name}: damaged NIfTI data ({first_line(err, 120)})") from None
    data = np.asarray(data)
    while data.ndim > 4:
        data = data[..., 0]  # trailing singleton dimensions (checked in header_info)
    if data.ndim == 2:
        data = data[:, :, None]
    # (i, j, k[, t]) -> ([t,] k, j, i); contiguous so later torch/np code gets no surprises.
    axes = (3, 2, 1, 0) if data.ndim == 4 else (2, 1, 0)
    data = np.ascontiguousarray(data.transpose(axes))
    if data.size == 0:
        raise ReadError(f"{path.name}: the NIfTI file holds no voxels")

    name = info["name"]
    affine = nifti_affine_to_zyx(img.affine)
    header = img.header
    metadata = {
        "nifti": {
            "qform_code": int(header["qform_code"]),
            "sform_code": int(header["sform_code"]),
            "dtype": str(info["dtype"]),
        }
    }
    sequence = guess_sequence(name)
    if sequence:
        metadata["sequence"] = sequence
    metadata.update(_label_metadata(header))

    kind = "image"
    channel_names = None
    if data.ndim == 4:
        channel_names = [str(i) for i in range(data.shape[0])]
    elif (is_label_name(name) or int(header["intent_code"]) == _NIFTI_INTENT_LABEL
          or looks_like_labels(data)):
        labels = as_labels(data)
        if labels is not None:
            data, kind = labels, "labels"
    return Volume(
        data=data,
        spacing=spacing_from_affine(affine),
        affine=affine,
        name=name,
        kind=kind,
        modality="MR" if sequence else "",
        source=[str(path)],
        channel_names=channel_names,
        metadata=metadata,
    )


def _label_metadata(header) -> dict:
    """{"label_names": {value: name}, "label_colors": {value: RGB 0-1}} that this plugin wrote
    into a comment extension (export.nifti), as far as present and readable; else {}."""
    import json

    from napari_tumorseg.label_records import read_label_record

    for ext in getattr(header, "extensions", ()):
        if ext.get_code() != 6:
            continue
        try:
            body = json.loads(ext.get_content().decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue  # another tool's comment
        ours = body.get(EXTENSION_KEY) if isinstance(body, dict) else None
        if not isinstance(ours, dict):
            continue
        return read_label_record(ours)
    return {}


def label_names_of(path) -> dict[int, str] | None:
    """The label names a NIfTI file carries (this plugin's comment extension), read from its
    header alone; None when it has none or cannot be read."""
    import nibabel as nib

    try:
        return _label_metadata(nib.load(str(path)).header).get("label_names")
    except (OSError, ValueError, nib.filebasedimages.ImageFileError):
        return None
