"""Open a COCO annotation JSON as label volumes (and its images, when they are beside it).

Only files that parse as COCO are claimed (:func:`is_coco_json`): a JSON object with an
``images`` list and an ``annotations`` list, so napari's other readers keep every other
JSON file.

* A COCO file written by export.coco_labels records the volume it came from
  (``info.volume_shape``, ``spacing``, ``affine``): it reopens as one labels Volume on
  that grid, slice by slice from each image's ``slice_index``.
* Any other COCO file (a Roboflow / Kaggle export) opens as a stack per image size: the
  labels (category ids, one slice per image in the file's order) and, when the image
  files are there, the images under them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from napari_tumorseg.errors import ReadError
from napari_tumorseg.io.volume import Volume

# A COCO file larger than this is not parsed just to decide whether to claim it.
MAX_JSON_BYTES = 256 * 1024 * 1024
# Pixels of one stack held in memory at most (images and labels each): 600 slices of
# 640x640 (a Roboflow split) fit; larger sets belong to the COCO dock, which streams them
# to mask files instead of holding them.
MAX_STACK_PIXELS = 256 * 1024 * 1024


def _parse(path: Path) -> dict | None:
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            return None
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    if not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        return None
    return data


def is_coco_json(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.suffix.lower() == ".json" and path.is_file() and _parse(path) is not None


def _own_export(path: Path, info: dict) -> Volume:
    from napari_tumorseg.export.coco_labels import read_coco_labels

    labels = read_coco_labels(path)
    spacing = info.get("spacing") or [1.0, 1.0, 1.0]
    affine = None
    raw = info.get("affine")
    if raw is not None:
        try:
            a = np.asarray(raw, dtype=float)
        except (TypeError, ValueError):
            a = None
        if (a is not None and a.shape == (4, 4) and np.all(np.isfinite(a))
                and np.all(np.linalg.norm(a[:3, :3], axis=0) > 0)):
            affine = a
    try:
        spacing = tuple(float(s) for s in spacing)
        if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
            spacing = (1.0, 1.0, 1.0)
    except (TypeError, ValueError):
        spacing = (1.0, 1.0, 1.0)
    if affine is not None:
        spacing = tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))
    name = str(info.get("volume_name") or path.stem)
    meta: dict = {"coco": {"path": str(path)}}
    if affine is not None:
        meta["stored_geometry"] = True
    return Volume(data=labels, spacing=spacing, affine=affine, name=f"{name} (COCO)", kind="labels",
                  source=[str(path)], metadata=meta)


def _groups(coco) -> dict[tuple[int, int], list[dict]]:
    """Image records by (height, width), in the file's order."""
    groups: dict[tuple[int, int], list[dict]] = {}
    for rec in coco.images.values():
        groups.setdefault((int(rec["height"]), int(rec["width"])), []).append(rec)
    return groups


def dataset_entries(path: Path) -> list[tuple[dict, "callable"]]:
    """(info, load) per stack of a Roboflow/Kaggle COCO file: described from the JSON alone,
    pixels read only when loaded. Images first, then their labels, per image size."""
    from napari_tumorseg.coco.dataset import load_coco

    coco = load_coco(path)
    if not coco.images:
        raise ReadError(f"{path.name}: a COCO file without images")
    groups = _groups(coco)
    out = []
    for (h, w), records in groups.items():
        if len(records) * h * w > MAX_STACK_PIXELS:
            raise ReadError(
                f"{path.name}: {len(records)} images of {w}x{h} are too many to open as one "
                "stack; convert them with the COCO to masks dock"
            )
        suffix = f" {w}x{h}" if len(groups) > 1 else ""
        name = f"{path.parent.name}{suffix}"
        files = [str(coco.image_path(r)) for r in records]
        info = {"name": name, "shape": [len(records), h, w], "spacing": [1.0, 1.0, 1.0],
                "modality": "", "n_files": len(files), "source": str(path)}
        if all(Path(f).is_file() for f in files):
            out.append(({**info, "kind": "image"}, lambda f=files, h=h, w=w, n=name: _image_stack(path, f, h, w, n)))
        out.append(({**info, "name": f"{name} (COCO)", "kind": "labels", "n_files": 1},
                    lambda c=coco, r=records, h=h, w=w, n=name, f=files: _label_stack(path, c, r, h, w, n, f)))
    return out


def _label_stack(path: Path, coco, records, h: int, w: int, name: str, files: list[str]) -> Volume:
    from napari_tumorseg.coco.to_masks import mask_dtype, rasterize

    dtype = mask_dtype(coco.max_category_id)
    labels = np.zeros((len(records), h, w), dtype=dtype)
    for z, rec in enumerate(records):
        labels[z] = rasterize(coco.anns_by_image[rec["id"]], h, w, per_category=True, dtype=dtype)
    return Volume(data=labels, name=f"{name} (COCO)", kind="labels", source=[str(path)],
                  metadata={"coco": {"path": str(path), "files": files}})


def _image_stack(path: Path, files: list[str], h: int, w: int, name: str) -> Volume:
    from napari_tumorseg.coco.to_masks import _read_image

    images = _images(files, h, w, _read_image)
    if images is None:
        raise ReadError(f"{path.name}: the images beside it are not all readable at {w}x{h}")
    return Volume(data=images, name=name, kind="image", source=files, metadata={"coco": {"path": str(path)}})


def _images(files: list[str], h: int, w: int, read) -> np.ndarray | None:
    """The images as one (z, y, x) grey stack, or None when any is missing or differs."""
    if not all(Path(f).is_file() for f in files):
        return None
    planes = []
    for f in files:
        try:
            arr = np.asarray(read(Path(f)))
        except ReadError:
            return None
        if arr.ndim == 3:
            arr = arr[..., :3].mean(axis=-1).astype(arr.dtype) if arr.shape[-1] >= 3 else arr[..., 0]
        if arr.shape != (h, w):
            return None
        planes.append(arr)
    return np.stack(planes)


def is_own_export(data: dict) -> bool:
    info = data.get("info") if isinstance(data.get("info"), dict) else {}
    return isinstance(info.get("volume_shape"), list) and all(
        isinstance(r, dict) and "slice_index" in r for r in data["images"])


def coco_entries(path: str | os.PathLike) -> list[tuple[dict, "callable"]]:
    """(info, load) for each volume of a COCO file, as io.readers lists them: an own export
    is one labels volume (read now: a few polygons), a dataset is described from its JSON."""
    path = Path(path)
    data = _parse(path)
    if data is None:
        raise ReadError(f"{path.name}: not a COCO annotation file")
    if is_own_export(data):
        vol = _own_export(path, data["info"])
        info = {"name": vol.name, "kind": "labels", "shape": [int(s) for s in vol.spatial_shape],
                "spacing": [float(s) for s in vol.spacing], "modality": "", "n_files": 1,
                "source": str(path)}
        return [(info, lambda: vol)]
    return dataset_entries(path)


def read_coco_json(path: str | os.PathLike) -> list[Volume]:
    """Volumes of a COCO file (see the module docstring)."""
    return [load() for _, load in coco_entries(path)]
