"""NRRD (``.nrrd``, ``.nhdr``, 3D Slicer's ``.seg.nrrd``) and ITK MetaImage (``.mha``,
``.mhd`` + raw) through SimpleITK, in the package's (z, y, x) convention.

SimpleITK reads and writes both formats with ITK's own IO (teem for NRRD), the code 3D Slicer
and ITK-SNAP use, and gives every image the same geometry: an origin, a spacing and a
direction matrix in the DICOM patient frame (LPS). ITK converts a NRRD written in another
``space`` (``right-anterior-superior``, ``RAS``, ...) to LPS on read; a NRRD without a
``space`` field has no stated frame and is taken as LPS, as ITK and Slicer do (the volume says
so in its warnings). Here index (i, j, k) of ITK (i fastest: x) becomes the array's (z, y, x)
= (k, j, i), and the affine becomes RAS (x and y negated), exactly as for DICOM, so
``Volume.affine @ (z, y, x, 1)`` is the RAS position of the voxel ITK places at LPS
``origin + direction @ (spacing * (i, j, k))``.

**Segment names** (3D Slicer's segmentation format, read from any NRRD that has them):
``Segment<N>_Name`` / ``_LabelValue`` / ``_Layer`` / ``_Color`` keys. One layer is a label
map as it is; several layers (overlapping segments, a 4D file whose first axis is a "list")
are flattened into one label map, keeping each segment's value when the values are distinct
across layers and renumbering 1..N otherwise, a voxel in two segments taking the later one (a
warning counts them). The names go to ``metadata["label_names"]`` ({value: name}), which the
layers, measurements and exports share; the colours to ``metadata["label_colors"]``.

Failures are one line naming the file: ITK's own text (multi-line, with its source paths) and
what its MetaImage library prints on the process's stderr are captured and reduced to the
reason (``truncated MetaImage data (1194567 of 2389480 bytes)``).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
from pathlib import Path

import numpy as np

from napari_tumorseg.errors import ReadError, first_line
from napari_tumorseg.io.volume import Volume

NRRD_SUFFIXES = (".seg.nrrd", ".nrrd", ".nhdr")
METAIMAGE_SUFFIXES = (".mha", ".mhd")
ITK_SUFFIXES = NRRD_SUFFIXES + METAIMAGE_SUFFIXES

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse

_SEGMENT_KEY = re.compile(r"^Segment(\d+)_(\w+)$")


def itk_suffix(path: str | os.PathLike) -> str | None:
    """The format suffix of ``path`` (".seg.nrrd", ".nrrd", ".nhdr", ".mha", ".mhd"), or None."""
    name = Path(path).name.lower()
    return next((s for s in ITK_SUFFIXES if name.endswith(s) and len(name) > len(s)), None)


def is_itk_path(path: str | os.PathLike) -> bool:
    return itk_suffix(path) is not None


def itk_stem(path: str | os.PathLike) -> str:
    """The file name without its format suffix ("case.seg.nrrd" -> "case")."""
    name = Path(path).name
    suffix = itk_suffix(path)
    return name[: -len(suffix)] if suffix else Path(name).stem


def format_name(path: str | os.PathLike) -> str:
    return "MetaImage" if (itk_suffix(path) or "") in METAIMAGE_SUFFIXES else "NRRD"


# ---------------------------------------------------------------- SimpleITK, quietly


_STDERR_LOCK = threading.Lock()


def _sitk():
    import SimpleITK as sitk

    # ITK's warnings are multi-line reports on stderr; what matters is said in our one line.
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    return sitk


@contextlib.contextmanager
def _captured_stderr():
    """Collect what C++ code writes on file descriptor 2 (ITK's MetaImage library reports a
    short read there, outside any exception) while the block runs; yields a list that holds
    the text afterwards. Serialised: the descriptor is the process's."""
    text: list[str] = []
    with _STDERR_LOCK:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr to borrow: run as is
            yield text
            return
        with tempfile.TemporaryFile() as sink:
            try:
                os.dup2(sink.fileno(), 2)
                yield text
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                text.append(sink.read(4096).decode("utf-8", "replace"))


def _reason(path: Path, err: BaseException, stderr: str) -> str:
    """The one reason ITK gives, without its source paths, object addresses or our folders."""
    short = re.search(r"ideal\s*=\s*(\d+)\s*:\s*actual\s*=\s*(\d+)", stderr)
    if short:
        return f"truncated data ({short.group(2)} of {short.group(1)} bytes)"
    if "Unable to determine ImageIO reader" in str(err):  # no ITK reader recognised the content
        return f"its content is not {format_name(path)}"
    lines = [ln.strip() for ln in f"{err}\n{stderr}".splitlines() if ln.strip()]
    nrrd = [ln for ln in lines if ln.startswith("[nrrd]")]
    if nrrd:  # teem's chain of reasons: the last is the cause
        return re.sub(r"^\[nrrd\]\s*\w+:\s*", "", nrrd[-1])
    meta = [ln for ln in lines if ln.startswith(("MetaImage:", "MetaObject:")) or "required" in ln]
    if meta:
        return re.sub(r"^Meta\w+:\s*(\w+:\s*)?", "", meta[0])
    for ln in lines:
        if "ERROR" in ln or "Exception" in ln or ln.startswith("/"):
            continue
        return ln
    return type(err).__name__


def _clean(path: Path, reason: str) -> str:
    reason = reason.replace(str(path), path.name).replace(str(path.parent) + os.sep, "")
    return first_line(reason, 160)


def _reader(path: Path):
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    return reader


def _fail(path: Path, what: str, err: BaseException, stderr: str) -> ReadError:
    return ReadError(f"{path.name}: {what} {format_name(path)} file ({_clean(path, _reason(path, err, stderr))})")


def _read_information(path: Path):
    if not path.is_file():
        raise ReadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ReadError(f"{path.name}: empty file")
    reader = _reader(path)
    with _captured_stderr() as err_text:
        try:
            reader.ReadImageInformation()
            failure = None
        except Exception as err:  # noqa: BLE001 - ITK raises RuntimeError for every bad file
            failure = err
    if failure is not None:
        raise _fail(path, "not a readable", failure, "".join(err_text))
    return reader


def _read_image(path: Path):
    reader = _reader(path)
    with _captured_stderr() as err_text:
        try:
            image = reader.Execute()
            failure = None
        except Exception as err:  # noqa: BLE001
            failure = err
    if failure is not None:
        raise _fail(path, "truncated or damaged", failure, "".join(err_text))
    return image


# ---------------------------------------------------------------- completeness


def _voxel_bytes(pixel_type: str, components: int) -> int | None:
    """Bytes of one voxel from SimpleITK's pixel type text ("16-bit signed integer")."""
    m = re.search(r"(\d+)-bit", pixel_type)
    if not m or "complex" in pixel_type:
        return None
    return int(m.group(1)) // 8 * max(components, 1)


def _check_complete(path: Path, expected: int | None) -> None:
    """Refuse a file cut short, from its size alone, as io.nifti does for NIfTI.

    ITK reads a cut file's header happily and fails only when the voxels run out, so the
    header's end (a NRRD's blank line, a MetaImage's ElementDataFile line) is found here and
    what follows is measured against what the header promises: the raw voxels, a
    MetaImage's CompressedDataSize, or a gzip NRRD's trailer (the uncompressed size mod 2**32;
    decompressed to decide when it disagrees). Detached data (.nhdr, a "data file" field, an
    .mhd's data file) is checked when it is one file beside the header.
    """
    if expected is None:
        return
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return
    if format_name(path) == "MetaImage":
        m = re.search(rb"^ElementDataFile\s*=\s*(.*?)\s*$", head, re.M)
        if not m:
            return
        start = head.index(b"\n", m.end()) + 1 if b"\n" in head[m.end():] else len(head)
        data_file = m.group(1).decode("utf-8", "replace")
        compressed = re.search(rb"^CompressedData\s*=\s*true\s*$", head, re.M | re.I)
        csize = re.search(rb"^CompressedDataSize\s*=\s*(\d+)", head, re.M)
        if compressed:
            if not csize:
                return
            expected = int(csize.group(1))
        if data_file == "LOCAL":
            available = size - start
        elif data_file and " " not in data_file and "%" not in data_file and data_file != "LIST":
            other = path.parent / data_file
            if not other.is_file():
                raise ReadError(f"{path.name}: its data file {Path(data_file).name} is missing")
            available = other.stat().st_size
        else:
            return
        if available < expected:
            raise ReadError(f"{path.name}: truncated MetaImage file ({available} of {expected} bytes of data)")
        return
    if itk_suffix(path) == ".nhdr":
        return
    end = head.find(b"\n\n")
    end = end + 2 if end >= 0 else -1
    if end < 0 or re.search(rb"^data ?file\s*:", head[:end], re.M):
        return
    enc = re.search(rb"^encoding\s*:\s*(\w+)", head[:end], re.M)
    encoding = enc.group(1).decode().lower() if enc else "raw"
    if encoding == "raw":
        if size - end < expected:
            raise ReadError(f"{path.name}: truncated NRRD file ({size - end} of {expected} bytes of data)")
    elif encoding in ("gzip", "gz"):
        _check_gzip(path, end, expected)


def _check_gzip(path: Path, start: int, expected: int) -> None:
    import zlib

    with open(path, "rb") as fh:
        fh.seek(-4, 2)
        if int.from_bytes(fh.read(4), "little") == expected % 2**32:
            return
        fh.seek(start)
        inflate, total = zlib.decompressobj(16 + zlib.MAX_WBITS), 0
        try:
            while chunk := fh.read(1 << 22):
                total += len(inflate.decompress(chunk))
                while inflate.eof and inflate.unused_data:  # another gzip member follows
                    rest = inflate.unused_data
                    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    total += len(inflate.decompress(rest))
        except zlib.error as err:
            raise ReadError(f"{path.name}: damaged NRRD data ({first_line(err, 80)})") from None
    if total < expected:
        raise ReadError(f"{path.name}: truncated NRRD file ({total} of {expected} bytes of data)")


# ---------------------------------------------------------------- geometry


def affine_from_itk(origin, spacing, direction) -> np.ndarray:
    """(z, y, x) -> RAS affine from ITK's LPS origin, spacing and direction (2-D or more; a
    4-D image's fourth axis is not spatial)."""
    dim = len(spacing)
    d = np.asarray(direction, float).reshape(dim, dim)
    lin = np.eye(3)
    n = min(dim, 3)
    lin[:n, :n] = d[:n, :n]
    if dim == 2:  # a single slice: its normal is the third axis
        normal = np.cross(lin[:, 0], lin[:, 1])
        lin[:, 2] = normal / (np.linalg.norm(normal) or 1.0)
    sp = np.ones(3)
    sp[:n] = np.asarray(spacing, float)[:n]
    org = np.zeros(3)
    org[:n] = np.asarray(origin, float)[:n]
    cols = lin * sp  # LPS step of index i, j, k
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = cols[:, 2], cols[:, 1], cols[:, 0]
    lps[:3, 3] = org
    return LPS_TO_RAS @ lps


def itk_geometry(affine: np.ndarray) -> tuple[tuple, tuple, tuple]:
    """ITK's (origin, spacing, direction) in LPS for a (z, y, x) -> RAS affine: the inverse of
    :func:`affine_from_itk` for 3-D images."""
    lps = LPS_TO_RAS @ np.asarray(affine, float)
    cols = lps[:3, [2, 1, 0]]  # steps of i (x), j (y), k (z)
    spacing = np.linalg.norm(cols, axis=0)
    if not np.all(spacing > 0) or not np.all(np.isfinite(lps)):
        raise ValueError("the affine has a zero or non-finite voxel size")
    direction = cols / spacing
    return (tuple(float(v) for v in lps[:3, 3]), tuple(float(v) for v in spacing),
            tuple(float(v) for v in direction.ravel()))


# ---------------------------------------------------------------- segments


def segments_of(keys: dict[str, str]) -> list[dict]:
    """3D Slicer's segment records from a NRRD's key/value fields, in segment order:
    ``{"index", "id", "name", "value", "layer", "color"}`` (an old file without label values
    or layers: value 1, one layer per segment)."""
    found: dict[int, dict[str, str]] = {}
    for key, value in keys.items():
        m = _SEGMENT_KEY.match(key)
        if m:
            found.setdefault(int(m.group(1)), {})[m.group(2)] = value.strip()
    out = []
    for index in sorted(found):
        fields = found[index]
        color = None
        try:
            rgb = [float(v) for v in fields.get("Color", "").split()]
            if len(rgb) == 3 and all(0 <= v <= 1 for v in rgb):
                color = tuple(rgb)
        except ValueError:
            pass
        out.append({
            "index": index,
            "id": fields.get("ID", f"Segment_{index}"),
            "name": fields.get("Name") or fields.get("ID") or f"Segment_{index}",
            "value": _int_field(fields.get("LabelValue"), 1),
            "layer": _int_field(fields.get("Layer"), index),
            "color": color,
        })
    return out


def _int_field(text: str | None, default: int) -> int:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return default


def flatten_segments(layers: np.ndarray, segments: list[dict]) -> tuple[np.ndarray, dict, dict, list[str]]:
    """One label map from (n_layers, z, y, x) segment layers: (labels, names, colours, warnings)."""
    n_layers = layers.shape[0]
    usable = [s for s in segments if 0 <= s["layer"] < n_layers and s["value"] > 0]
    warns = []
    if len(usable) < len(segments):
        warns.append(f"{len(segments) - len(usable)} segment(s) name a layer or value the file does not hold")
    values = [s["value"] for s in usable]
    renumber = n_layers > 1 and len(set(values)) < len(values)
    top = len(usable) if renumber else max(values, default=1)
    labels = np.zeros(layers.shape[1:], dtype=np.uint8 if top < 256 else np.uint16 if top < 65536 else np.uint32)
    names: dict[int, str] = {}
    colors: dict[int, tuple] = {}
    claimed = np.zeros(layers.shape[1:], bool) if n_layers > 1 else None
    overlap = 0
    for new, s in enumerate(usable, start=1):
        value = new if renumber else s["value"]
        where = layers[s["layer"]] == s["value"]
        if claimed is not None:
            overlap += int(np.count_nonzero(where & claimed))
            claimed |= where
        labels[where] = value
        names[value] = s["name"]
        if s["color"] is not None:
            colors[value] = s["color"]
    if renumber:
        warns.append("segments of different layers share label values: numbered 1-"
                     f"{len(usable)} in segment order")
    if overlap:
        warns.append(f"{overlap} voxel(s) lie in more than one segment: each shows the later segment")
    return labels, names, colors, warns


# ---------------------------------------------------------------- reading


def header_info(path: str | os.PathLike) -> dict:
    """Shape (z, y, x), channels, spacing, affine, dtype, name and key/value fields, from the
    header alone (no voxel is read)."""
    path = Path(path)
    reader = _read_information(path)
    dim = reader.GetDimension()
    size = tuple(int(s) for s in reader.GetSize())
    if dim < 2 or dim > 4:
        raise ReadError(f"{path.name}: {dim}-D {format_name(path)} is not supported")
    components = int(reader.GetNumberOfComponents())
    channels = components if components > 1 else (size[3] if dim == 4 else 0)
    if dim == 4 and components > 1:
        raise ReadError(f"{path.name}: a 4-D {format_name(path)} of vectors is not supported")
    shape = (size[2] if dim >= 3 else 1, size[1], size[0])
    affine = affine_from_itk(reader.GetOrigin(), reader.GetSpacing(), reader.GetDirection())
    keys = {k: reader.GetMetaData(k) for k in reader.GetMetaDataKeys()}
    sitk = _sitk()
    pixel_type = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    voxel = _voxel_bytes(pixel_type, components)
    _check_complete(path, None if voxel is None else int(np.prod(size)) * voxel)
    return {
        "shape": shape,
        "channels": channels,
        "spacing": tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0)),
        "affine": affine,
        "pixel_type": pixel_type,
        "name": itk_stem(path),
        "keys": keys,
        "segments": segments_of(keys) if format_name(path) == "NRRD" else [],
    }


def read_itk(path: str | os.PathLike) -> Volume:
    """Read a NRRD / MetaImage file into a (z, y, x) or (c, z, y, x) Volume with its affine,
    in the file's own voxel order (the readers reorient it for display)."""
    from napari_tumorseg.io.nifti import as_labels, guess_sequence, is_label_name, looks_like_labels

    path = Path(path)
    info = header_info(path)
    image = _read_image(path)
    sitk = _sitk()
    data = sitk.GetArrayFromImage(image)  # (z, y, x[, c]) or (y, x[, c]); (t, z, y, x) for 4-D
    dim = image.GetDimension()
    vector = image.GetNumberOfComponentsPerPixel() > 1
    if vector:
        data = np.moveaxis(data, -1, 0)  # components first: (c, [z,] y, x)
    if dim == 2:
        data = data[:, None] if vector else data[None]
    data = np.ascontiguousarray(data)
    if data.size == 0:
        raise ReadError(f"{path.name}: the {format_name(path)} file holds no voxels")

    warns: list[str] = []
    keys = info["keys"]
    if format_name(path) == "NRRD" and not keys.get("NRRD_space") and dim >= 3:
        warns.append("no 'space' field: the patient frame is not stated; LPS assumed (as ITK and 3D Slicer do)")
    name = info["name"]
    metadata: dict = {"itk": {"format": format_name(path), "pixel_type": info["pixel_type"]}}
    sequence = guess_sequence(name)
    if sequence:
        metadata["sequence"] = sequence
    kind, channel_names = "image", None
    segments = info["segments"]
    if segments:
        layers = data if data.ndim == 4 else data[None]
        if layers.dtype.kind not in "ui":
            raise ReadError(f"{path.name}: segmentation layers must hold integers, not {layers.dtype}")
        data, names, colors, more = flatten_segments(layers, segments)
        warns += more
        kind = "labels"
        metadata["label_names"] = names
        if colors:
            metadata["label_colors"] = colors
    elif data.ndim == 4:
        channel_names = [str(i) for i in range(data.shape[0])]
    elif is_label_name(name) or itk_suffix(path) == ".seg.nrrd" or looks_like_labels(data):
        labels = as_labels(data)
        if labels is not None:
            data, kind = labels, "labels"
    if warns:
        metadata["warnings"] = warns
    return Volume(
        data=data,
        spacing=info["spacing"],
        affine=info["affine"],
        name=name,
        kind=kind,
        modality="MR" if sequence else "",
        source=[str(path)],
        channel_names=channel_names,
        metadata=metadata,
    )
