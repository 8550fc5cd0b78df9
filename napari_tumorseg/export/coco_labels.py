"""Labels (z, y, x) -> a COCO JSON with one image per labelled slice, and back.

The polygons come from :func:`napari_tumorseg.coco.from_masks.labels_to_coco` (exact
pixel-boundary polygons, one category per label value). ``holes="rle"`` (default here)
stores the few components that have background holes as RLE so that re-importing gives
the same masks; ``holes="fill"`` writes polygons only (holes filled), for tools that
read nothing else.

Slice images (optional) are written beside the JSON (the Roboflow layout) or into
``images_dir``: ``png`` as 8-bit, windowed to the volume's 0.5-99.5 percentiles (what
COCO tools and annotators open), or ``tif`` with the original values. The JSON's
``info`` keeps the volume shape, spacing and slice indices, so :func:`read_coco_labels`
rebuilds the label volume on the original grid.

Nothing is written unless every output path is free (or ``overwrite``); each file is
written atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from napari_tumorseg.coco.from_masks import labels_to_coco, write_coco
from napari_tumorseg.errors import ReadError, TumorSegError, WriteError
from napari_tumorseg.fileio import atomic_path, check_writable

IMAGE_FORMATS = ("png", "tif")


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    finite = image[np.isfinite(image)] if image.dtype.kind == "f" else image
    if finite.size == 0:
        return np.zeros(image.shape, np.uint8)
    lo, hi = np.percentile(finite, (0.5, 99.5))
    if hi <= lo:
        hi = lo + 1.0
    scaled = (np.nan_to_num(image.astype(np.float64), nan=lo) - lo) / (hi - lo)
    return np.round(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


def _write_image(path: Path, data: np.ndarray, overwrite: bool) -> None:
    try:
        with atomic_path(path, overwrite=overwrite) as tmp:
            if path.suffix == ".png":
                import imageio.v3 as iio

                iio.imwrite(tmp, data, extension=".png")
            else:
                import tifffile

                tifffile.imwrite(tmp, data)
    except OSError as err:
        raise WriteError(f"cannot write {path}: {err.strerror}") from err


def export_labels_coco(
    labels: np.ndarray,
    out_json: str | os.PathLike,
    image: np.ndarray | None = None,
    category_names: Mapping[int, str] | None = None,
    name: str = "labels",
    images_dir: str | os.PathLike | None = None,
    image_format: str = "png",
    spacing=None,
    holes: str = "rle",
    overwrite: bool = False,
    affine=None,
) -> Path:
    """Write ``labels`` as COCO JSON (and the labelled slices of ``image`` if given).

    ``image`` is (z, y, x) or (z, y, x, 3) on the labels' grid. ``affine`` (voxel -> RAS
    mm) is kept in ``info`` so the labels reopen where the source was. Returns the JSON path.
    """
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels[None]
    if labels.ndim != 3:
        raise TumorSegError(f"labels must be (y, x) or (z, y, x), got shape {labels.shape}")
    if image_format not in IMAGE_FORMATS:
        raise TumorSegError(f"image format must be one of {IMAGE_FORMATS}, not {image_format!r}")
    if image is not None:
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[None]
        if image.shape[:3] != labels.shape or image.ndim not in (3, 4):
            raise TumorSegError(
                f"image {image.shape} and labels {labels.shape} are not on the same grid"
            )
    out_json = Path(out_json)
    images_dir = Path(images_dir) if images_dir is not None else out_json.parent
    file_names = [f"{name}_z{z:04d}.{image_format}" for z in range(labels.shape[0])]
    coco = labels_to_coco(labels, file_names, dict(category_names or {}), name, holes)
    if images_dir != out_json.parent:
        rel = os.path.relpath(images_dir, out_json.parent)
        for rec in coco["images"]:
            rec["file_name"] = Path(rel, rec["file_name"]).as_posix()
    coco["info"].update(
        {
            "volume_name": name,
            "volume_shape": list(labels.shape),
            "spacing": [float(s) for s in spacing] if spacing is not None else None,
        }
    )
    if affine is not None and np.all(np.isfinite(np.asarray(affine, dtype=float))):
        coco["info"]["affine"] = [[float(v) for v in row] for row in np.asarray(affine, dtype=float)]

    targets = [out_json]
    if image is not None:
        targets += [images_dir / file_names[rec["slice_index"]] for rec in coco["images"]]
    for path in targets:  # refuse before writing anything
        check_writable(path, overwrite)
    if image is not None:
        pixels = _to_uint8(image) if image_format == "png" else image
        for rec in coco["images"]:
            z = rec["slice_index"]
            _write_image(images_dir / file_names[z], pixels[z], overwrite)
    return write_coco(coco, out_json, overwrite)


def read_coco_labels(path: str | os.PathLike, shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """The (z, y, x) label volume back from a COCO file written by :func:`export_labels_coco`.

    Label values are the category ids; slices come from each image's ``slice_index``.
    ``shape`` is needed only for COCO files that do not record ``volume_shape``.
    """
    from napari_tumorseg.coco.dataset import load_coco
    from napari_tumorseg.coco.to_masks import mask_dtype, rasterize

    coco = load_coco(path)
    with open(coco.path, encoding="utf-8") as fh:
        info = json.load(fh).get("info") or {}
    shape = tuple(shape or info.get("volume_shape") or ())
    if len(shape) != 3:
        raise ReadError(f"{path}: no volume shape recorded; pass shape=(z, y, x)")
    # Wide enough for every category id (70000 must not wrap into a uint16).
    dtype = mask_dtype(coco.max_category_id)
    out = np.zeros(shape, dtype)
    for image_id, rec in coco.images.items():
        z = rec.get("slice_index")
        if not isinstance(z, int) or not 0 <= z < shape[0]:
            raise ReadError(f"{path}: image {rec['file_name']} has no valid slice_index")
        if (rec["height"], rec["width"]) != shape[1:]:
            raise ReadError(f"{path}: image {rec['file_name']} is not {shape[2]}x{shape[1]}")
        out[z] = rasterize(coco.anns_by_image[image_id], rec["height"], rec["width"], per_category=True,
                           dtype=dtype)
    return out.astype(mask_dtype(int(out.max(initial=0))), copy=False)
