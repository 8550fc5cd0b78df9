"""Predicted masks scored against a COCO export, image by image.

``tumorseg evaluate PRED <COCO export>``: the ground truth of every image is rasterised
exactly as ``coco2mask`` writes it (pycocotools, on the image file's own size), and the
prediction of that image is found in PRED, which may be

* a folder of masks named after the images (``<stem>.tif`` / ``.png``, or
  ``<stem>_mask.*``), as ``coco2mask`` or a per-image export writes them;
* another COCO JSON (or export folder) holding the predicted polygons, matched by file name;
* one stack (TIFF / NIfTI) with one slice per image, in the order a folder of those images
  opens (natural sort of the file names), as ``tumorseg predict`` on the folder writes it.

Every value > 0 is tumour on both sides, unless ``labels`` picks category ids of the
ground truth (the prediction then counts as those labels where it is > 0, or where it
equals one of them when it holds several values). Reported: Dice per image, the images
where only the prediction has tumour (false-positive images) or only the ground truth
(missed images), and the Dice of all pixels pooled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_tumorseg.coco.dataset import ROBOFLOW_JSON, CocoSet, find_coco_splits, load_coco
from napari_tumorseg.errors import ReadError, TumorSegError

_MASK_SUFFIXES = (".tif", ".tiff", ".png")


def is_coco_ground_truth(path: str | os.PathLike) -> bool:
    """A COCO JSON file, or a folder holding ``_annotations.coco.json`` (or one per split)."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() == ".json"
    return path.is_dir() and (
        (path / ROBOFLOW_JSON).is_file()
        or any((p / ROBOFLOW_JSON).is_file() for p in path.iterdir() if p.is_dir())
    )


def _one_split(path: Path) -> Path:
    splits = find_coco_splits(path)
    if len(splits) > 1:
        names = ", ".join(s for s, _ in splits)
        raise TumorSegError(f"{path.name} holds several splits ({names}); give one split's folder")
    return splits[0][1]


@dataclass
class _Truth:
    coco: CocoSet
    sizes: dict[int, tuple[int, int]]  # image id -> (height, width) of the image file


def _truth(path: Path) -> _Truth:
    from napari_tumorseg.coco.to_masks import _true_size

    coco = load_coco(_one_split(path))
    if not coco.images:
        raise ReadError(f"{coco.path.name}: no usable image records")
    sizes = {}
    for image_id, image in coco.images.items():
        size = _true_size(os.fspath(coco.image_path(image)), image["height"], image["width"])
        sizes[image_id] = size or (image["height"], image["width"])
    return _Truth(coco, sizes)


def _gt_mask(truth: _Truth, image_id: int, labels: list[int] | None) -> np.ndarray:
    from napari_tumorseg.coco.to_masks import mask_dtype, rasterize

    h, w = truth.sizes[image_id]
    anns = truth.coco.anns_by_image[image_id]
    if not labels:
        return rasterize(anns, h, w) > 0
    ids = rasterize(anns, h, w, per_category=True, dtype=mask_dtype(truth.coco.max_category_id))
    return np.isin(ids, labels)


def _stem(file_name: str) -> str:
    return Path(file_name.replace("\\", "/")).stem


def _match_images(truth: _Truth, find, load) -> tuple[dict[int, np.ndarray], list[str]]:
    """Each ground-truth image's prediction: ``find(stem)`` locates it, ``load(found, image_id)``
    reads it; returns the masks and the file names with no prediction."""
    out, missing = {}, []
    for image_id, image in truth.coco.images.items():
        found = find(_stem(image["file_name"]))
        if found is None:
            missing.append(image["file_name"])
        else:
            out[image_id] = load(found, image_id)
    return out, missing


def _pred_from_folder(folder: Path, truth: _Truth) -> dict[int, np.ndarray]:
    from napari_tumorseg.coco.from_masks import read_mask

    files = {}
    for p in folder.iterdir():
        if p.is_file() and p.suffix.lower() in _MASK_SUFFIXES:
            files.setdefault(p.stem, p)
    out, missing = _match_images(truth, lambda stem: files.get(stem) or files.get(f"{stem}_mask"),
                                 lambda path, _id: read_mask(path))
    if missing:
        raise TumorSegError(
            f"{folder.name}: no predicted mask for {len(missing)} of {len(truth.coco.images)} images "
            f"(e.g. {missing[0]}; expected {_stem(missing[0])}.tif or .png)"
        )
    return out


def _pred_from_coco(path: Path, truth: _Truth) -> dict[int, np.ndarray]:
    from napari_tumorseg.coco.to_masks import mask_dtype, rasterize

    pred = load_coco(_one_split(path))
    by_name = {_stem(im["file_name"]): im for im in pred.images.values()}

    def load(record, image_id):
        h, w = truth.sizes[image_id]
        return rasterize(pred.anns_by_image[record["id"]], h, w, per_category=True,
                         dtype=mask_dtype(pred.max_category_id))

    out, missing = _match_images(truth, by_name.get, load)
    if missing:
        raise TumorSegError(
            f"{path.name}: {len(missing)} of {len(truth.coco.images)} images have no record "
            f"in the prediction (e.g. {missing[0]})"
        )
    return out


def _pred_from_stack(path: Path, truth: _Truth) -> dict[int, np.ndarray]:
    from napari_tumorseg.io.images import natural_key
    from napari_tumorseg.io.readers import read_path

    volumes = [v for v in read_path(path) if v.kind == "labels"] or read_path(path)
    if len(volumes) != 1 or volumes[0].data.ndim != 3:
        raise TumorSegError(f"{path.name}: expected one (z, y, x) mask stack")
    stack = np.asarray(volumes[0].data)
    order = sorted(truth.coco.images, key=lambda i: natural_key(truth.coco.images[i]["file_name"]))
    if stack.shape[0] != len(order):
        raise TumorSegError(
            f"{path.name} has {stack.shape[0]} slices for {len(order)} images; give one slice per image"
        )
    return {image_id: stack[k] for k, image_id in enumerate(order)}


def _prediction(pred_path: Path, truth: _Truth) -> dict[int, np.ndarray]:
    if not pred_path.exists():
        raise ReadError(f"{pred_path}: no such file or folder")
    if is_coco_ground_truth(pred_path) and (pred_path.is_file() or (pred_path / ROBOFLOW_JSON).is_file()):
        return _pred_from_coco(pred_path, truth)
    if pred_path.is_dir():
        return _pred_from_folder(pred_path, truth)
    return _pred_from_stack(pred_path, truth)


def _binary_pred(mask: np.ndarray, labels: list[int] | None) -> np.ndarray:
    values = np.unique(mask)
    if labels and len(values[values != 0]) > 1:
        return np.isin(mask, labels)
    return mask > 0


def _dice(tp: int, p: int, g: int) -> float:
    """Dice from the counts, with the metrics module's empty-mask policy (both empty: 1)."""
    from napari_tumorseg.metrics import metrics_from_counts

    return float(metrics_from_counts(tp, p - tp, g - tp, 0)["dice"])


def evaluate_coco(pred_path: str | os.PathLike, gt_path: str | os.PathLike,
                  labels: list[int] | None = None) -> dict[str, Any]:
    """Per-image and pooled agreement of PRED with the COCO ground truth at ``gt_path``."""
    truth = _truth(Path(gt_path))
    pred = _prediction(Path(pred_path), truth)
    per_image = []
    tp_all = p_all = g_all = 0
    fp_images, missed = [], []
    for image_id, image in truth.coco.images.items():
        g = _gt_mask(truth, image_id, labels)
        mask = np.asarray(pred[image_id])
        if mask.ndim != 2 or mask.shape != g.shape:
            raise TumorSegError(
                f"prediction for {image['file_name']} is {mask.shape[-1]}x{mask.shape[0]}, "
                f"the image is {g.shape[1]}x{g.shape[0]}"
            )
        p = _binary_pred(mask, labels)
        tp, np_, ng = int(np.count_nonzero(p & g)), int(np.count_nonzero(p)), int(np.count_nonzero(g))
        tp_all, p_all, g_all = tp_all + tp, p_all + np_, g_all + ng
        if np_ and not ng:
            fp_images.append(image["file_name"])
        if ng and not np_:
            missed.append(image["file_name"])
        per_image.append({"file_name": image["file_name"], "dice": _dice(tp, np_, ng),
                          "pred_pixels": np_, "gt_pixels": ng})
    with_tumour = [r["dice"] for r in per_image if r["gt_pixels"]]
    return {
        "pred": str(pred_path),
        "gt": str(truth.coco.path),
        "compared": (f"prediction vs ground-truth categories {', '.join(map(str, labels))}" if labels
                     else "every value > 0 on both sides (whole tumour)"),
        "n_images": len(per_image),
        "n_images_with_tumour": len(with_tumour),
        "pooled": {
            "dice": _dice(tp_all, p_all, g_all),
            "iou": 1.0 if p_all + g_all == 0 else tp_all / (p_all + g_all - tp_all),
            "precision": tp_all / p_all if p_all else (1.0 if not g_all else 0.0),
            "recall": tp_all / g_all if g_all else (1.0 if not p_all else 0.0),
        },
        "mean_dice_images_with_tumour": float(np.mean(with_tumour)) if with_tumour else None,
        "false_positive_images": fp_images,
        "missed_images": missed,
        "per_image": per_image,
    }


def format_coco_report(result: dict[str, Any], max_images: int = 20) -> str:
    pooled = result["pooled"]
    mean = result["mean_dice_images_with_tumour"]
    lines = [
        f"{Path(result['pred']).name} vs {Path(result['gt']).name}: {result['n_images']} images "
        f"({result['n_images_with_tumour']} with tumour); compared: {result['compared']}",
        f"Pooled over all pixels: Dice {pooled['dice']:.4f}, IoU {pooled['iou']:.4f}, "
        f"precision {pooled['precision']:.4f}, recall {pooled['recall']:.4f}",
        "Mean Dice over images with tumour: " + ("-" if mean is None else f"{mean:.4f}"),
        f"False-positive images (tumour predicted, none annotated): {len(result['false_positive_images'])}",
        f"Missed images (tumour annotated, none predicted): {len(result['missed_images'])}",
        "Per image (Dice, predicted / annotated pixels):",
    ]
    rows = result["per_image"]
    for r in rows[:max_images]:
        lines.append(f"  {r['file_name']}: {r['dice']:.4f} ({r['pred_pixels']} / {r['gt_pixels']})")
    if len(rows) > max_images:
        lines.append(f"  ... and {len(rows) - max_images} more (--json lists every image)")
    return "\n".join(lines)
