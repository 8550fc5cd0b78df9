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
# Slices of one stack held in memory at most (labels + images): a 640x640 export of
# 2000 images is ~1.6 GB; the COCO dock converts such sets to files instead.
MAX_STACK_SLICES = 2000


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


def _dataset_stacks(path: Path) -> list[Volume]:
    from napari_tumorseg.coco.dataset import load_coco
    from napari_tumorseg.coco.to_masks import _read_image, mask_dtype, rasterize

    coco = load_coco(path)
    if not coco.images:
        raise ReadError(f"{path.name}: a COCO file without images")
    groups: dict[tuple[int, int], list[dict]] = {}
    for rec in coco.images.values():
        groups.setdefault((int(rec["height"]), int(rec["width"])), []).append(rec)
    dtype = mask_dtype(coco.max_category_id)
    volumes: list[Volume] = []
    for (h, w), records in groups.items():
        if len(records) > MAX_STACK_SLICES:
            raise ReadError(
                f"{path.name}: {len(records)} images of {w}x{h} are too many to open as one "
                "stack; convert them with the COCO to masks dock"
            )
        labels = np.zeros((len(records), h, w), dtype=dtype)
        for z, rec in enumerate(records):
            labels[z] = rasterize(coco.anns_by_image[rec["id"]], h, w, per_category=True, dtype=dtype)
        suffix = f" {w}x{h}" if len(groups) > 1 else ""
        files = [str(coco.image_path(r)) for r in records]
        images = _images(files, h, w, _read_image)
        if images is not None:
            volumes.append(Volume(data=images, name=f"{path.parent.name}{suffix}", kind="image",
                                  source=files, metadata={"coco": {"path": str(path)}}))
        volumes.append(Volume(data=labels, name=f"{path.parent.name}{suffix} (COCO)", kind="labels",
                              source=[str(path)], metadata={"coco": {"path": str(path),
                                                                      "files": files}}))
    return volumes


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


def read_coco_json(path: str | os.PathLike) -> list[Volume]:
    """Volumes of a COCO file (see the module docstring)."""
    path = Path(path)
    data = _parse(path)
    if data is None:
        raise ReadError(f"{path.name}: not a COCO annotation file")
    info = data.get("info") if isinstance(data.get("info"), dict) else {}
    if isinstance(info.get("volume_shape"), list) and all(
        isinstance(r, dict) and "slice_index" in r for r in data["images"]
    ):
        return [_own_export(path, info)]
    return _dataset_stacks(path)
