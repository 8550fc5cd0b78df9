"""``tumorseg evaluate PRED GT [--json]``: agreement of a predicted mask with a ground truth.

Both paths go through the readers (NIfTI, TIFF/PNG masks, DICOM). Every value > 0 is
tumour for the headline Dice, IoU, precision, recall, HD95 (mm) and volumes (mL): for
BraTS labels that is the whole tumour, and the report says what was compared. ``--label
V`` compares ground-truth label V only. When the prediction itself holds more than one
label, each value is also scored on its own (``pred == v`` against ``gt == v``), under
"per label". A COCO export as GT (its JSON, or its folder) is scored image by image
(see :mod:`napari_tumorseg.coco.evaluate`). Distances and volumes use the
ground truth's voxel spacing. The two masks must lie on the same grid (shape, spacing,
and position when both files record it); nothing is resampled. Definitions and the
empty-mask policy are those of :mod:`napari_tumorseg.metrics`; an undefined HD95 (one
mask empty) prints as "undefined" and is ``null`` in the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.measurements import compare, format_report, lesion_lines, measure
from napari_tumorseg.metrics import segmentation_metrics

# More distinct values than this and the file is an image (a scan), not a label mask.
MAX_LABELS = 64


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="Dice, IoU, precision, recall, HD95 (mm) and volumes of a predicted mask vs a ground truth",
    )
    p.add_argument("pred", help="predicted mask: NIfTI, TIFF/PNG (stack, slices) or DICOM")
    p.add_argument("gt", help="ground-truth mask on the same grid")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--pred-series", type=int, default=None, metavar="N",
                   help="which volume of PRED to use when it holds several (as in `tumorseg info`)")
    p.add_argument("--gt-series", type=int, default=None, metavar="N",
                   help="which volume of GT to use when it holds several")
    p.add_argument("--label", type=int, action="append", default=None, metavar="V",
                   help="compare only ground-truth label V (repeatable, e.g. --label 4 for BraTS "
                        "enhancing tumour); default: every value > 0, i.e. the whole tumour")
    p.set_defaults(func=run)


def _load_mask(path: str, series: int | None, what: str):
    from napari_tumorseg.io.readers import read_path

    volumes = read_path(path, series)
    if len(volumes) > 1:
        # A folder of images with their masks (e.g. the LGG layout): the labels are meant.
        labels = [v for v in volumes if v.kind == "labels"]
        if len(labels) != 1:
            raise TumorSegError(
                f"{what} {path} holds {len(volumes)} volumes; pick one with --{what.lower()}-series N"
            )
        volumes = labels
    vol = volumes[0]
    if vol.data.ndim != 3:
        raise TumorSegError(f"{what} {path} has channels {vol.data.shape}; give a single label mask")
    data = np.asarray(vol.data)
    if data.dtype.kind == "f" and not np.array_equal(data, np.round(data)):
        raise TumorSegError(
            f"{what} {path} holds non-integer values (a probability map?): threshold it first"
        )
    n_values = len(np.unique(data))
    if n_values > MAX_LABELS + 1:
        raise TumorSegError(
            f"{what} {path} holds {n_values} distinct values: an image, not a label mask"
        )
    return vol, data


def _same_grid(pred, gt) -> None:
    from napari_tumorseg.io.grid import check_same_grid

    # The same check as the Correct dock's metrics: shape, voxel size and, when both files
    # carry a real geometry, the place in the scanner.
    reason = check_same_grid(pred, gt)
    if reason:
        raise TumorSegError(f"PRED and GT are on different grids: {reason}")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def _restricted(pred: np.ndarray, gt: np.ndarray, labels: list[int] | None):
    """(pred, gt, what is compared): GT limited to ``labels``; PRED too when it holds
    several labels itself, else its every value > 0 stands for them."""
    gt_values = [int(v) for v in np.unique(gt) if v != 0]
    pred_values = [int(v) for v in np.unique(pred) if v != 0]
    if not labels:
        names = ", ".join(map(str, gt_values)) or "none"
        return pred, gt, f"every value > 0 on both sides (whole tumour; GT labels {names})"
    unknown = [v for v in labels if v not in gt_values]
    if unknown and not gt_values:
        raise TumorSegError(f"--label {unknown[0]}: the ground truth is empty")
    chosen = ", ".join(map(str, labels))
    if len(pred_values) > 1:
        return np.isin(pred, labels), np.isin(gt, labels), f"label(s) {chosen} on both sides"
    return pred > 0, np.isin(gt, labels), f"PRED > 0 vs GT label(s) {chosen}"


def _prediction_lesions(pred: np.ndarray, spacing) -> dict[str, Any]:
    """The compared prediction lesion by lesion (26-connected components; every lesion, with
    its longest axial diameter, perpendicular and product: napari_tumorseg.measurements)."""
    m = measure(pred > 0, spacing)
    return {
        "pred_n_lesions": m["n_lesions"],
        "pred_largest_axial_diameter_mm": m["largest_axial_diameter_mm"],
        "pred_perpendicular_diameter_mm": m["perpendicular_diameter_mm"],
        "pred_bidimensional_product_mm2": m["bidimensional_product_mm2"],
        "pred_diameter_slice": m["diameter_slice"],
        "pred_lesions": m["lesions"],
    }


def evaluate(pred_path: str, gt_path: str, pred_series: int | None = None,
             gt_series: int | None = None, labels: list[int] | None = None) -> dict[str, Any]:
    """The evaluation as a dict (what ``--json`` prints, before non-finite -> null)."""
    pred_vol, pred = _load_mask(pred_path, pred_series, "PRED")
    gt_vol, gt = _load_mask(gt_path, gt_series, "GT")
    _same_grid(pred_vol, gt_vol)
    spacing = tuple(float(s) for s in gt_vol.spacing)
    pred_full, gt_full = pred, gt
    pred, gt, compared = _restricted(pred, gt, labels)
    result: dict[str, Any] = {
        "pred": str(pred_path),
        "gt": str(gt_path),
        "shape": list(gt.shape),
        "spacing_mm": list(spacing),
        "compared": compared,
        **compare(pred, gt, spacing),
        **_prediction_lesions(pred, spacing),
    }
    pred, gt = pred_full, gt_full
    # Label by label only when the prediction itself has labels: a binary prediction
    # scored against GT label 1 alone would read as a poor result for a good whole tumour.
    pred_values = {int(v) for v in np.unique(pred)} - {0}
    values = sorted(pred_values | {int(v) for v in np.unique(gt)} - {0})
    if len(pred_values) > 1 and not labels:
        per: dict[str, Any] = {}
        sp = spacing if gt.shape[0] > 1 else spacing[1:]
        for v in values:
            p, g = pred == v, gt == v
            if gt.shape[0] == 1:
                p, g = p[0], g[0]
            m = segmentation_metrics(p, g, sp)
            per[str(v)] = {
                "dice": m["dice"], "iou": m["iou"], "precision": m["precision"],
                "recall": m["recall"], "hd95_mm": m["hd95"],
                "pred_volume_ml": float(np.count_nonzero(p) * np.prod(spacing) / 1000.0),
                "gt_volume_ml": float(np.count_nonzero(g) * np.prod(spacing) / 1000.0),
            }
        result["per_label"] = per
    return result


def run(args) -> int:
    from napari_tumorseg.coco.evaluate import evaluate_coco, format_coco_report, is_coco_ground_truth

    if is_coco_ground_truth(args.gt):
        result = evaluate_coco(args.pred, args.gt, args.label)
        print(json.dumps(result, indent=2) if args.json else format_coco_report(result))
        return 0
    result = evaluate(args.pred, args.gt, args.pred_series, args.gt_series, args.label)
    if args.json:
        print(json.dumps(_clean(result), indent=2))
        return 0
    print(format_report(result, title=f"{Path(args.pred).name} vs {Path(args.gt).name}"))
    print(f"Compared: {result['compared']}")
    if result["pred_n_lesions"]:
        print(f"Predicted lesions: {result['pred_n_lesions']}, largest axial diameter "
              f"{result['pred_largest_axial_diameter_mm']:.1f} x {result['pred_perpendicular_diameter_mm']:.1f} mm "
              f"on slice {result['pred_diameter_slice']}")
        print("\n".join(lesion_lines(result["pred_lesions"])))
    print("Grid: " + "x".join(str(s) for s in result["shape"]) + " voxels at "
          + " x ".join(f"{s:.4g}" for s in result["spacing_mm"]) + " mm (z, y, x)")
    for value, m in result.get("per_label", {}).items():
        hd = "undefined" if not math.isfinite(m["hd95_mm"]) else f"{m['hd95_mm']:.2f} mm"
        print(f"Label {value}: Dice {m['dice']:.4f}, IoU {m['iou']:.4f}, precision "
              f"{m['precision']:.4f}, recall {m['recall']:.4f}, HD95 {hd}, volumes "
              f"{m['pred_volume_ml']:.3f} / {m['gt_volume_ml']:.3f} mL")
    return 0
