"""Write (z, y, x) / (c, z, y, x) arrays as TIFF: one multi-page stack, or one file per slice.

Stacks carry their voxel size: as ImageJ hyperstack metadata (unit mm, z spacing,
x/y resolution) when ImageJ can hold the dtype, so Fiji shows the true scale, and
otherwise as tifffile's JSON description. io.images reads both back.

The full geometry travels too, so a TIFF reopens where its source was in the scanner:
``{"affine": voxel (z, y, x) -> RAS mm, "kind": "labels" | "image"}`` as JSON under the
key "tumorseg" (a label map adds what its values mean, see label_records), in the ImageJ
"Info" property (Fiji shows it under Image > Show Info) or in the JSON description. Each per-slice file carries its own slice's affine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from napari_tumorseg.errors import WriteError
from napari_tumorseg.export.dtypes import file_dtype
from napari_tumorseg.fileio import atomic_path, check_writable, staged_outputs

TIFF_SUFFIXES = (".tif", ".tiff")
_IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)


def _tiff_dtype(data: np.ndarray) -> np.ndarray:
    return file_dtype(data, (np.uint8, np.uint16, np.int16, np.int32, np.uint32))


def _as_zyx(array: np.ndarray) -> np.ndarray:
    data = np.asarray(array)
    if data.ndim == 2:
        data = data[None]
    if data.ndim not in (3, 4) or data.size == 0:
        raise WriteError(f"cannot write TIFF from an array of shape {data.shape}")
    return _tiff_dtype(data)


def _resolution(spacing) -> tuple[float, float]:
    return (1.0 / float(spacing[2]), 1.0 / float(spacing[1]))


GEOMETRY_KEY = "tumorseg"


def _geometry(affine, kind: str | None, label_names=None, label_colors=None) -> dict:
    from napari_tumorseg.label_records import label_record

    out: dict = {}
    if affine is not None:
        a = np.asarray(affine, dtype=float)
        if a.shape == (4, 4) and np.all(np.isfinite(a)):
            out["affine"] = [[float(v) for v in row] for row in a]
    if kind:
        out["kind"] = kind
    if kind == "labels":
        out.update(label_record(label_names, label_colors))
    return out


def write_tiff_stack(
    array: np.ndarray,
    path: str | Path,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    overwrite: bool = False,
    affine: np.ndarray | None = None,
    kind: str | None = None,
    label_names=None,
    label_colors=None,
) -> Path:
    """Write a (z, y, x) or (c, z, y, x) array as one multi-page TIFF with its spacing (mm),
    and, when given, its voxel -> RAS ``affine``, ``kind`` ("labels" / "image") and, for
    labels, what each value means (``label_names`` {value: name}, ``label_colors``)."""
    import tifffile

    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        raise WriteError(f"{path.name}: a TIFF file name must end in .tif or .tiff")
    data = _as_zyx(array)
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise WriteError(f"invalid spacing {spacing}")
    geometry = _geometry(affine, kind, label_names, label_colors)
    info = {"Info": json.dumps({GEOMETRY_KEY: geometry})} if geometry else {}
    extra = {GEOMETRY_KEY: geometry} if geometry else {}
    try:
        with atomic_path(path, overwrite=overwrite) as tmp:
            if data.dtype in _IMAGEJ_DTYPES:
                # ImageJ's axis order is TZCYX, so channels go after z.
                arr, axes = (data.transpose(1, 0, 2, 3), "ZCYX") if data.ndim == 4 else (data, "ZYX")
                tifffile.imwrite(
                    tmp,
                    arr,
                    imagej=True,
                    resolution=_resolution(spacing),
                    metadata={"axes": axes, "spacing": spacing[0], "unit": "mm", **info},
                )
            else:
                axes = "CZYX" if data.ndim == 4 else "ZYX"
                tifffile.imwrite(
                    tmp,
                    data,
                    resolution=_resolution(spacing),
                    resolutionunit="NONE",
                    metadata={"axes": axes, "spacing": list(spacing), "unit": "mm", **extra},
                )
    except OSError as err:
        raise WriteError(f"cannot write {path}: {err.strerror or err}") from None
    return path


def slice_paths(n_slices: int, folder: str | Path, stem: str) -> list[Path]:
    """File names for a per-slice export: ``stem_001.tif``... (1-based like the LGG layout)."""
    width = max(3, len(str(n_slices)))
    return [Path(folder) / f"{stem}_{i + 1:0{width}d}.tif" for i in range(n_slices)]


def write_tiff_slices(
    array: np.ndarray,
    folder: str | Path,
    stem: str,
    overwrite: bool = False,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    affine: np.ndarray | None = None,
    kind: str | None = None,
    label_names=None,
    label_colors=None,
) -> list[Path]:
    """Write each z slice of a (z, y, x) array as its own 2D TIFF in ``folder``.

    With ``affine`` (of the whole stack), each file records its own slice's affine.

    Every target is checked before the first is written, so a refusal leaves the
    folder as it was.
    """
    import tifffile

    data = _as_zyx(array)
    if data.ndim != 3:
        raise WriteError("per-slice TIFF export needs a (z, y, x) array without channels")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise WriteError(f"{folder} exists and is not a folder")
    paths = slice_paths(data.shape[0], folder, stem)
    for path in paths:
        check_writable(path, overwrite)
    # All slices or none: written into a staging folder, moved into place at the end.
    with staged_outputs(folder, overwrite) as stage:
        staged = stage / folder.name
        staged.mkdir()
        for k, (path, plane) in enumerate(zip(paths, data)):
            slice_affine = None
            if affine is not None:
                slice_affine = np.array(affine, dtype=float)
                slice_affine[:3, 3] = slice_affine[:3, :3] @ [k, 0.0, 0.0] + slice_affine[:3, 3]
            geometry = _geometry(slice_affine, kind, label_names, label_colors)
            extra = {GEOMETRY_KEY: geometry} if geometry else {}
            tifffile.imwrite(
                staged / path.name,
                plane,
                resolution=_resolution(spacing),
                resolutionunit="NONE",
                metadata={"axes": "YX", "spacing": [float(s) for s in spacing], "unit": "mm", **extra},
            )
    return paths
