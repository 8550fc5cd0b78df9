"""Label masks -> COCO polygons (``tumorseg mask2coco`` and the napari labels export).

One annotation per 8-connected component of each non-zero label value; the category is
the label value (a binary mask, 0/255 or bool, gives category 1).

Polygons trace the exact pixel boundary: :func:`skimage.measure.find_contours` on the
padded component gives mid-edge points, and every diagonal step between two of them
is replaced by the pixel corner it cuts, so the polygon's vertices are pixel corners in
COCO's coordinates (pixel (r, c) covers x in [c, c+1], y in [r, r+1]). pycocotools
rasterises such a polygon back to exactly the same pixels, so masks -> COCO -> masks
is the identity (up to holes, below), and ``area`` (the pixel count of what the
segmentation encodes, i.e. ``pycocotools.mask.area`` of its RLE) equals the polygon's
own area. ``bbox`` is the component's [x, y, width, height] in the same coordinates.

Holes: a COCO polygon list is a union, so it cannot carve a hole. ``holes="fill"``
(default) writes the outer boundary only, filling holes; ``holes="rle"`` writes
components that have holes as compressed RLE (``iscrowd`` 0), which keeps them exact.
Within an image, annotations come in decreasing filled area, so painting them in
order (as per-category rasterisation does) puts nested objects back on top.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
from scipy import ndimage
from skimage import measure

from napari_tumorseg.errors import ReadError, TumorSegError, WriteError, first_line
from napari_tumorseg.fileio import atomic_path, check_writable

MASK_SUFFIXES = (".tif", ".tiff", ".png")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
_EIGHT = np.ones((3, 3), dtype=bool)


def mask_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """Exact pixel-boundary polygons of a 2D boolean mask, as (N, 2) (y, x) arrays.

    Coordinates are COCO's pixel corners; subtract 0.5 for napari data coordinates.
    Inner boundaries (holes) come out as polygons too; fill holes first to avoid them.
    """
    padded = np.pad(np.asarray(mask, dtype=np.uint8), 1)
    polygons = []
    for contour in measure.find_contours(padded, 0.5, fully_connected="high"):
        # Mid-edge points in index space: minus the pad, plus 0.5 to reach corner space.
        pts = contour[:-1] - 0.5
        nxt = np.roll(pts, -1, axis=0)
        diagonal = (pts[:, 0] != nxt[:, 0]) & (pts[:, 1] != nxt[:, 1])
        on_row_edge = pts[:, 0] == np.round(pts[:, 0])
        corner_y = np.where(on_row_edge, pts[:, 0], nxt[:, 0])
        corner_x = np.where(on_row_edge, nxt[:, 1], pts[:, 1])
        corners = np.stack([corner_y, corner_x], axis=1)[diagonal]
        if len(corners) >= 3:
            polygons.append(corners)
    return polygons


def _occupied_box(labels: np.ndarray) -> tuple[np.ndarray, int, int]:
    """The smallest crop holding every non-zero pixel, and its origin (y, x)."""
    rows = np.flatnonzero(labels.any(axis=1))
    if rows.size == 0:
        return labels[:0, :0], 0, 0
    cols = np.flatnonzero(labels.any(axis=0))
    oy, ox = int(rows[0]), int(cols[0])
    return labels[oy : rows[-1] + 1, ox : cols[-1] + 1], oy, ox


def _component_annotations(
    labels: np.ndarray, category_of: dict[int, int] | None, holes: str
) -> list[dict]:
    """Annotations (without ids) for every component of every label value of a 2D mask.

    ``category_of`` maps label values to category ids (default: identity).
    """
    out: list[dict] = []
    # Labelling only the occupied box: tumours are small next to the image.
    box, oy, ox = _occupied_box(labels)
    values = _label_values(box)
    category_of = category_of or {v: v for v in values}
    for value in values:
        comps, _ = ndimage.label(box == value, structure=_EIGHT)
        for idx, sl in enumerate(ndimage.find_objects(comps), start=1):
            y0, x0 = sl[0].start + oy, sl[1].start + ox
            comp = comps[sl] == idx
            filled = ndimage.binary_fill_holes(comp)
            has_holes = holes == "rle" and filled.sum() != comp.sum()
            if has_holes:
                full = np.zeros(labels.shape, dtype=np.uint8, order="F")
                full[y0 : y0 + comp.shape[0], x0 : x0 + comp.shape[1]] = comp
                rle = mask_utils.encode(full)
                seg: list | dict = {"size": list(labels.shape), "counts": rle["counts"].decode()}
                area = int(comp.sum())
            else:
                seg = [
                    (poly[:, ::-1] + (x0, y0)).ravel().tolist() for poly in mask_polygons(filled)
                ]
                area = int(filled.sum())
            h, w = comp.shape
            out.append(
                {
                    "category_id": category_of[int(value)],
                    "segmentation": seg,
                    "area": float(area),
                    "bbox": [float(x0), float(y0), float(w), float(h)],
                    "iscrowd": 0,
                    "_order": -int(filled.sum()),
                }
            )
    out.sort(key=lambda a: a.pop("_order"))
    return out


def _integer_labels(mask: np.ndarray, file_name: str) -> np.ndarray:
    """``mask`` as non-negative integer labels, or a ReadError naming the file.

    A label becomes a category id, and ids 0 and below are not categories: NaN, fractions
    and negative values mean the file is not a label mask (a probability map, a signed
    difference image), so it is refused rather than cast.
    """
    if mask.dtype == bool:
        return mask.astype(np.uint8)
    if mask.dtype.kind == "f":
        finite = np.isfinite(mask)
        if not finite.all():
            raise ReadError(f"{file_name}: {int(mask.size - finite.sum())} pixels are NaN/Inf; "
                            "expected integer labels")
        if not np.array_equal(mask, np.round(mask)):
            raise ReadError(f"{file_name}: fractional values (a probability map?); expected integer labels")
        if mask.size and mask.max() > 2**32 - 1:
            raise ReadError(f"{file_name}: label values above 2^32-1")
    elif mask.dtype.kind not in "iu":
        raise ReadError(f"{file_name}: {mask.dtype} pixels; expected integer labels")
    if mask.size and mask.min() < 0:
        raise ReadError(f"{file_name}: negative label value {mask.min():g}; labels must be 0 "
                        "(background) or positive")
    if mask.dtype.kind == "f":
        return mask.astype(np.uint32)
    return mask


def _label_values(mask: np.ndarray) -> list[int]:
    """Sorted non-zero values; bincount for 8-bit masks, as np.unique sorts every pixel."""
    if mask.dtype in (np.uint8, np.bool_):
        return [int(v) for v in np.flatnonzero(np.bincount(mask.ravel().view(np.uint8))) if v]
    return [int(v) for v in np.unique(mask[mask != 0])]


def _category_map(mask: np.ndarray, category_names: dict[int, str] | None) -> dict[int, int]:
    values = _label_values(mask)
    names = category_names or {}
    if values == [255] and 255 not in names:
        return {255: 1}  # a 0/255 binary mask (seed 000's format) is category 1
    return {v: v for v in values}


def masks_to_coco(
    masks: Iterable[tuple[str, np.ndarray]] | Iterable[tuple[str, np.ndarray, dict]],
    category_names: dict[int, str] | None = None,
    holes: str = "fill",
) -> dict:
    """A COCO dict from ``(file_name, 2D label mask[, extra image fields])`` items.

    Every mask becomes an image (an empty mask: an image without annotations, so the
    round trip gives it back as an all-zero mask). Width and height come from the mask
    unless the extra fields give them (they must then match the mask).
    """
    if holes not in ("fill", "rle"):
        raise TumorSegError(f"holes must be 'fill' or 'rle', not {holes!r}")
    bad = [c for c in (category_names or {}) if c < 1]
    if bad:
        raise TumorSegError(f"category id {bad[0]}: COCO category ids start at 1 (0 is background)")
    images, annotations = [], []
    found: set[int] = set()
    for image_id, item in enumerate(masks, start=1):
        file_name, mask = item[0], np.asarray(item[1])
        extra = dict(item[2]) if len(item) > 2 else {}
        if mask.ndim != 2:
            raise ReadError(f"{file_name}: mask must be 2D, got shape {mask.shape}")
        mask = _integer_labels(mask, file_name)
        h, w = mask.shape
        if extra.get("height", h) != h or extra.get("width", w) != w:
            raise ReadError(
                f"{file_name}: mask is {w}x{h} but the image is {extra['width']}x{extra['height']}"
            )
        images.append({"id": image_id, "file_name": file_name, "width": w, "height": h, **extra})
        cat_map = _category_map(_occupied_box(mask)[0], category_names)
        found.update(cat_map.values())
        for ann in _component_annotations(mask, cat_map, holes):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
    names = dict(category_names or {})
    ids = sorted(found | set(names))
    categories = [
        {"id": c, "name": names.get(c, "tumor" if c == 1 else f"label {c}"), "supercategory": ""}
        for c in ids
    ]
    return {
        "info": {
            "description": "written by napari-tumorseg",
            "date_created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def labels_to_coco(
    labels: np.ndarray,
    file_names: list[str] | None = None,
    category_names: dict[int, str] | None = None,
    name: str = "labels",
    holes: str = "fill",
) -> dict:
    """COCO for a napari labels layer: (y, x), or (z, y, x) with one image per labelled slice.

    Slices without any label are left out. Image names are ``file_names[z]`` or
    ``{name}_z{z:04d}.tif``; each image record keeps its ``slice_index``.
    """
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels[None]
    if labels.ndim != 3:
        raise TumorSegError(f"labels must be (y, x) or (z, y, x), got shape {labels.shape}")
    if file_names is not None and len(file_names) != labels.shape[0]:
        raise TumorSegError(f"{len(file_names)} file names for {labels.shape[0]} slices")
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise TumorSegError(f"labels must be integers, got {labels.dtype}")

    def items() -> Iterator[tuple[str, np.ndarray, dict]]:
        for z in range(labels.shape[0]):
            if labels[z].any():
                fn = file_names[z] if file_names is not None else f"{name}_z{z:04d}.tif"
                yield fn, labels[z], {"slice_index": z}

    # A labels layer holds label values, never seed-000 0/255 masks: keep 255 as 255.
    names = dict(category_names or {})
    if 255 not in names and (labels == 255).any():
        names[255] = "label 255"
    return masks_to_coco(items(), names, holes)


def read_mask(path: Path) -> np.ndarray:
    """A 2D label mask from TIFF or PNG; RGB masks with equal channels are reduced to one."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            data = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as im:
                data = np.asarray(im)
    except Exception as err:  # noqa: BLE001 - any decoder failure is a bad file for the user
        raise ReadError(f"cannot read mask {path.name}: {first_line(err)}") from err
    if data.ndim == 3 and data.shape[-1] in (3, 4):
        if not (data[..., :3] == data[..., :1]).all():
            raise ReadError(f"{path.name}: colour mask; expected one label value per pixel")
        data = data[..., 0]
    if data.ndim != 2:
        raise ReadError(f"{path.name}: expected a 2D mask, got shape {data.shape}")
    return data


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from an image file's header, without decoding its pixels."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tif.pages[0].shape
            return int(shape[0]), int(shape[1])
        from PIL import Image

        with Image.open(path) as im:
            return im.height, im.width
    except Exception as err:  # noqa: BLE001
        raise ReadError(f"cannot read image {path.name}: {first_line(err)}") from err


def _mask_files(masks_dir: Path) -> list[tuple[Path, str]]:
    """(mask path, image stem) pairs; an LGG-style folder pairs ``X_mask.tif`` with ``X``."""
    files = sorted(
        p for p in masks_dir.iterdir()
        if p.is_file() and p.suffix.lower() in MASK_SUFFIXES and not p.name.startswith(".")
    )
    suffixed = [p for p in files if p.stem.endswith("_mask")]
    if suffixed:
        return [(p, p.stem[: -len("_mask")]) for p in suffixed]
    return [(p, p.stem) for p in files]


def mask_folder_to_coco(
    masks_dir: str | os.PathLike,
    out_json: str | os.PathLike | None = None,
    images_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    category_names: dict[int, str] | None = None,
    holes: str = "fill",
) -> dict:
    """COCO for a folder of masks (``*.tif``, ``*.tiff``, ``*.png``); write it if ``out_json``.

    With ``images_dir``, each mask is matched by stem to its image there, whose file name
    and size (read from its header, checked against the mask) go into the COCO image;
    otherwise the image is named after the mask.
    """
    masks_dir = Path(masks_dir)
    if not masks_dir.is_dir():
        raise ReadError(f"{masks_dir} is not a folder of masks")
    if out_json is not None:
        check_writable(out_json, overwrite)
    pairs = _mask_files(masks_dir)
    if not pairs:
        if any(
            p.is_dir() and any(q.suffix.lower() in MASK_SUFFIXES for q in p.iterdir())
            for p in masks_dir.iterdir()
        ):
            raise ReadError(f"{masks_dir} holds masks only in sub-folders; convert each split")
        raise ReadError(f"no .tif/.tiff/.png masks in {masks_dir}")
    by_stem: dict[str, Path] = {}
    if images_dir is not None:
        images_dir = Path(images_dir)
        if not images_dir.is_dir():
            raise ReadError(f"{images_dir} is not a folder of images")
        for p in sorted(images_dir.iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith("_mask"):
                by_stem.setdefault(p.stem, p)

    def items() -> Iterator[tuple[str, np.ndarray, dict]]:
        for mask_path, stem in pairs:
            mask = read_mask(mask_path)
            if images_dir is None:
                yield mask_path.name, mask, {}
                continue
            image = by_stem.get(stem)
            if image is None:
                raise ReadError(f"no image named {stem}.* in {images_dir} for mask {mask_path.name}")
            h, w = image_size(image)
            yield image.name, mask, {"width": w, "height": h}

    coco = masks_to_coco(items(), category_names, holes)
    if out_json is not None:
        write_coco(coco, out_json, overwrite)
    return coco


def write_coco(coco: dict, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Atomically write a COCO dict as JSON."""
    path = Path(path)
    try:
        with atomic_path(path, overwrite=overwrite) as tmp:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(coco, fh)
    except OSError as err:
        raise WriteError(f"cannot write {path}: {err.strerror}") from err
    return path
