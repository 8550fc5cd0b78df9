"""npe2 writer contributions: labels and images to TIFF, NIfTI, NRRD and MetaImage.

Each hook is ``(path, data, meta) -> list[str]`` for one layer, where ``meta`` is the
layer's ``as_layer_data_tuple()`` attributes (scale, translate, name, metadata...).

Overwriting: napari calls these hooks with the exact file the user confirmed in its
"Save" dialog, which already asked before replacing an existing file; refusing here
would only turn that "yes" into an error. So a single-file target is replaced, always
atomically (a failed write leaves the old file intact). A folder of per-slice TIFFs is
different: the dialog asked about the folder, not the files in it, so existing slice
files are never replaced and the write is refused before anything is written.

NIfTI, NRRD and MetaImage output take the world geometry the layer came with (the source affine stored
by the readers in ``metadata["tumorseg"]["affine"]``) when it matches the layer's
scale; otherwise an axis-aligned affine from ``scale`` and ``translate`` (napari's world
frame is (I, P, L) mm, see io.orientation). A layer read by the plugin is written back
in its source file's voxel order, so it overlays that file voxel for voxel in any
viewer. TIFF output carries the affine and the layer type, so it reopens in place. Labels
saved as NRRD (``.seg.nrrd`` for 3D Slicer) carry their label names (``metadata
["label_names"]``) as Slicer's segment names, and saved as NIfTI in a comment extension that
the reader reads back (a region map's values alone do not say what they are).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_tumorseg.errors import WriteError
from napari_tumorseg.export.nifti import write_nifti
from napari_tumorseg.export.tiff import write_tiff_slices, write_tiff_stack
from napari_tumorseg.io.orientation import WORLD_FROM_RAS, to_source_order


def _array(data: Any, meta: dict) -> np.ndarray:
    if meta.get("multiscale"):
        data = data[0]  # full resolution only
    arr = np.asarray(data)
    if meta.get("rgb") and arr.ndim >= 3:
        arr = np.moveaxis(arr, -1, 0)  # (..., y, x, c) -> (c, ..., y, x)
        if arr.ndim == 3:
            arr = arr[:, None]
        return arr
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim not in (3, 4):
        raise WriteError(f"cannot save a {arr.ndim}-D layer; expected 2D, 3D or channels x 3D")
    return arr


def _spacing(meta: dict) -> tuple[float, float, float]:
    scale = [float(s) for s in meta.get("scale", ())][-3:]
    scale = [1.0] * (3 - len(scale)) + scale
    if any(s <= 0 for s in scale):
        raise WriteError(f"invalid layer scale {scale}")
    return tuple(scale)


def _affine(meta: dict, spacing: tuple[float, float, float]) -> np.ndarray:
    stored = (meta.get("metadata") or {}).get("tumorseg", {}).get("affine")
    if stored is not None:
        affine = np.asarray(stored, dtype=float)
        if affine.shape == (4, 4) and np.allclose(
            np.linalg.norm(affine[:3, :3], axis=0), spacing, rtol=1e-3
        ):
            return affine
    translate = [float(t) for t in meta.get("translate", ())][-3:]
    translate = [0.0] * (3 - len(translate)) + translate
    world = np.eye(4)
    world[:3, :3] = np.diag(spacing)
    world[:3, 3] = translate
    return WORLD_FROM_RAS @ world  # the world frame (I, P, L) back to RAS


def _is_folder_target(path: Path) -> bool:
    return path.suffix == "" or path.is_dir()


def _write_tiff(path: str, data: Any, meta: dict, kind: str = "image") -> list[str]:
    target = Path(path)
    arr = _array(data, meta)
    spacing = _spacing(meta)
    affine = _affine(meta, spacing)
    layer_meta = (meta.get("metadata") or {}) if kind == "labels" else {}
    named = {"label_names": layer_meta.get("label_names") or None,
             "label_colors": layer_meta.get("label_colors") or None}
    if _is_folder_target(target):
        stem = str(meta.get("name") or target.name).replace("/", "_").replace(" ", "_")
        return [str(p) for p in write_tiff_slices(arr, target, stem, overwrite=False, spacing=spacing,
                                                  affine=affine, kind=kind, **named)]
    return [str(write_tiff_stack(arr, target, spacing=spacing, overwrite=True, affine=affine, kind=kind,
                                 **named))]


def _in_source_order(arr: np.ndarray, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """The layer's voxels and affine, back in its source file's voxel order when it still has
    its source's grid (written as shown, still in place, otherwise)."""
    spacing = _spacing(meta)
    affine = _affine(meta, spacing)
    layer_meta = meta.get("metadata") or {}
    stored = (layer_meta.get("tumorseg") or {}).get("affine")
    if stored is not None and np.allclose(affine, np.asarray(stored, dtype=float)):
        try:
            source_arr, source_affine = to_source_order(arr, layer_meta)
        except ValueError:  # no longer its source's shape
            source_affine = None
        if source_affine is not None:
            return source_arr, source_affine
    return arr, affine


def _write_nifti(path: str, data: Any, meta: dict, intent: str | None = None) -> list[str]:
    arr, affine = _in_source_order(_array(data, meta), meta)
    layer_meta = (meta.get("metadata") or {}) if intent == "label" else {}
    names, colors = layer_meta.get("label_names"), layer_meta.get("label_colors")
    return [str(write_nifti(arr, path, affine=affine, overwrite=True, intent=intent,
                            label_names=names or None, label_colors=colors or None))]


def _write_itk(path: str, data: Any, meta: dict, labels: bool = False) -> list[str]:
    from napari_tumorseg.export.nrrd_mha import write_itk

    arr, affine = _in_source_order(_array(data, meta), meta)
    if labels and arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    layer_meta = meta.get("metadata") or {}
    names = layer_meta.get("label_names") if labels else None
    colors = layer_meta.get("label_colors") if labels else None
    return [str(write_itk(arr, path, affine=affine, overwrite=True, labels=labels,
                          label_names={int(k): str(v) for k, v in (names or {}).items()} or None,
                          label_colors=colors or None))]


def _labels(data: Any, meta: dict) -> Any:
    arr = np.asarray(data[0] if meta.get("multiscale") else data)
    if arr.dtype.kind == "f":
        raise WriteError("a labels layer must hold integers")
    return arr


def write_labels_tiff(path: str, data: Any, meta: dict) -> list[str]:
    """Labels -> one TIFF stack, or one TIFF per slice when ``path`` is a folder."""
    return _write_tiff(path, _labels(data, meta), {**meta, "multiscale": False}, kind="labels")


def write_labels_nifti(path: str, data: Any, meta: dict) -> list[str]:
    """Labels -> NIfTI with the source's world geometry."""
    return _write_nifti(path, _labels(data, meta), {**meta, "multiscale": False}, intent="label")


def write_image_tiff(path: str, data: Any, meta: dict) -> list[str]:
    """Image -> one TIFF stack, or one TIFF per slice when ``path`` is a folder."""
    return _write_tiff(path, data, meta)


def write_image_nifti(path: str, data: Any, meta: dict) -> list[str]:
    """Image -> NIfTI with the source's world geometry."""
    return _write_nifti(path, data, meta)


def write_labels_nrrd(path: str, data: Any, meta: dict) -> list[str]:
    """Labels -> NRRD / 3D Slicer .seg.nrrd (segment names from the label names), source geometry."""
    return _write_itk(path, _labels(data, meta), {**meta, "multiscale": False}, labels=True)


def write_labels_mha(path: str, data: Any, meta: dict) -> list[str]:
    """Labels -> MetaImage (.mha / .mhd) with the source's world geometry."""
    return _write_itk(path, _labels(data, meta), {**meta, "multiscale": False}, labels=True)


def write_image_nrrd(path: str, data: Any, meta: dict) -> list[str]:
    """Image -> NRRD with the source's world geometry."""
    return _write_itk(path, data, meta)


def write_image_mha(path: str, data: Any, meta: dict) -> list[str]:
    """Image -> MetaImage (.mha / .mhd) with the source's world geometry."""
    return _write_itk(path, data, meta)
