"""Segmentation metrics: one definition shared by the trainer, the widgets and ``tumorseg evaluate``.

Definitions (binary masks, foreground = True):

* ``dice`` (= F1) = 2TP / (2TP + FP + FN); ``iou`` = TP / (TP + FP + FN);
  ``precision`` = TP / (TP + FP); ``recall`` = TP / (TP + FN);
  ``pixel_accuracy`` = (TP + TN) / N.
* ``mean_accuracy`` (seed 003): the mean over classes of the per-class accuracy, i.e.
  (TN / (TN + FP) + TP / (TP + FN)) / 2. The seed prints the factor as 1/"Total Pixel";
  its own note that a random model scores 50 % shows that 1/(number of classes) is meant.
  Only classes present in the target count, so an all-background target gives TN / N.
* ``hd95``: MONAI's ``compute_hausdorff_distance(percentile=95)``: surface voxels are
  ``mask XOR binary_erosion(mask)`` (scipy's default cross structuring element, image
  border counted as background); for every surface voxel of one mask the Euclidean
  distance in mm (``sampling=spacing``) to the nearest surface voxel of the other; the
  95th percentile (linear interpolation) of each direction; the larger of the two.

Empty-mask policy (stated once, used everywhere):

* both masks empty: dice = iou = precision = recall = 1, hd95 = 0 (perfect agreement;
  MONAI's DiceMetric/MeanIoU with ``ignore_empty=False`` give the same 1, its Hausdorff
  gives NaN there, which we do not copy because NaN would poison per-image means);
* exactly one empty: dice = iou = 0, the ratio whose denominator is zero is 0, and
  hd95 = inf: no surface to reach is infinitely far (MONAI's plain Hausdorff gives inf;
  its percentile version gives NaN only because it interpolates inf - inf). :class:`MetricAverager` averages hd95 over the images
  where it is finite and reports how many were left out as ``hd95_undefined``.

Arrays are (z, y, x) or (y, x); ``spacing`` is in the same axis order, in mm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from napari_tumorseg.brats import REGION_NAMES
from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.output_kinds import output_kind

METRIC_NAMES = (
    "dice",
    "iou",
    "precision",
    "recall",
    "pixel_accuracy",
    "mean_accuracy",
    "hd95",
)



def _as_bool(mask, name: str) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.dtype != bool:
        arr = arr > 0
    if arr.ndim not in (2, 3):
        raise TumorSegError(f"{name} must be 2D or 3D, got shape {arr.shape}")
    return arr


def _spacing(spacing, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    if np.isscalar(spacing):
        return (float(spacing),) * ndim
    sp = tuple(float(s) for s in spacing)
    if len(sp) > ndim:  # a (z, y, x) spacing given for a 2D slice: keep the in-plane part
        sp = sp[-ndim:]
    if len(sp) != ndim:
        raise TumorSegError(f"spacing {sp} does not match a {ndim}D mask")
    return sp


def _ratio(num: float, den: float, both_empty: bool) -> float:
    if den > 0:
        return float(num / den)
    return 1.0 if both_empty else 0.0


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask ^ ndimage.binary_erosion(mask)


def surface_distances(
    pred: np.ndarray, target: np.ndarray, spacing=None
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of ``pred`` to ``target``'s surface, and back.

    Both masks must be non-empty. Works on the bounding box of their union with a one-voxel
    margin, which leaves every surface voxel and every nearest-surface distance unchanged.
    """
    pred = _as_bool(pred, "prediction")
    target = _as_bool(target, "target")
    sp = _spacing(spacing, pred.ndim)
    union = pred | target
    box = ndimage.find_objects(union.astype(np.uint8))[0]
    box = tuple(
        slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, union.shape)
    )
    sp_edges = _surface(pred[box])
    st_edges = _surface(target[box])
    # EDT of the complement gives, at every voxel, the distance to the nearest surface voxel.
    dt_target = ndimage.distance_transform_edt(~st_edges, sampling=sp)
    dt_pred = ndimage.distance_transform_edt(~sp_edges, sampling=sp)
    return dt_target[sp_edges], dt_pred[st_edges]


def hausdorff_distance(pred, target, spacing=None, percentile: float | None = 95.0) -> float:
    """Symmetric (percentile) Hausdorff distance in mm; see the module doc for empty masks."""
    pred = _as_bool(pred, "prediction")
    target = _as_bool(target, "target")
    if pred.shape != target.shape:
        raise TumorSegError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    p_any, t_any = bool(pred.any()), bool(target.any())
    if not p_any and not t_any:
        return 0.0
    if not p_any or not t_any:
        return math.inf
    d_pt, d_tp = surface_distances(pred, target, spacing)
    if percentile is None:
        return float(max(d_pt.max(), d_tp.max()))
    return float(max(np.percentile(d_pt, percentile), np.percentile(d_tp, percentile)))


def hd95(pred, target, spacing=None) -> float:
    """95th-percentile symmetric Hausdorff distance in mm (MONAI's definition)."""
    return hausdorff_distance(pred, target, spacing, 95.0)


def confusion_counts(pred, target) -> tuple[int, int, int, int]:
    """(TP, FP, FN, TN) of two binary masks of the same shape."""
    pred = np.asarray(pred).astype(bool, copy=False)
    target = np.asarray(target).astype(bool, copy=False)
    if pred.shape != target.shape:
        raise TumorSegError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    tp = int(np.count_nonzero(pred & target))
    n_pred = int(np.count_nonzero(pred))
    n_true = int(np.count_nonzero(target))
    fp, fn = n_pred - tp, n_true - tp
    tn = pred.size - tp - fp - fn
    return tp, fp, fn, tn


def metrics_from_counts(tp: float, fp: float, fn: float, tn: float) -> dict[str, float]:
    """Every count-based metric of the module doc from a confusion matrix."""
    both_empty = tp + fp + fn == 0
    n = tp + fp + fn + tn
    per_class = []
    if tn + fp > 0:
        per_class.append(tn / (tn + fp))
    if tp + fn > 0:
        per_class.append(tp / (tp + fn))
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, both_empty),
        "iou": _ratio(tp, tp + fp + fn, both_empty),
        "precision": _ratio(tp, tp + fp, both_empty),
        "recall": _ratio(tp, tp + fn, both_empty),
        "pixel_accuracy": float((tp + tn) / n) if n else 1.0,
        "mean_accuracy": float(np.mean(per_class)) if per_class else 1.0,
    }


def segmentation_metrics(pred, target, spacing=None, hd: bool = True) -> dict[str, float]:
    """Dice, IoU, precision, recall, pixel and mean accuracy, and HD95 (mm) of two masks.

    Non-boolean inputs are binarised with ``> 0``. ``hd=False`` skips the (slower) HD95.
    """
    pred = _as_bool(pred, "prediction")
    target = _as_bool(target, "target")
    out = metrics_from_counts(*confusion_counts(pred, target))
    if hd:
        out["hd95"] = hd95(pred, target, spacing)
    return out


def multi_region_metrics(
    pred, target, spacing=None, names: Sequence[str] | None = None, hd: bool = True
) -> dict[str, dict[str, float]]:
    """Per-region metrics of (C, ...) channel masks (e.g. WT/TC/ET) and their ``"mean"``.

    The mean of hd95 is over the regions where it is finite (NaN when none is).
    """
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise TumorSegError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    names = list(names) if names is not None else _default_names(pred.shape[0])
    if len(names) != pred.shape[0]:
        raise TumorSegError(f"{len(names)} region names for {pred.shape[0]} channels")
    out = {
        name: segmentation_metrics(p, t, spacing, hd) for name, p, t in zip(names, pred, target)
    }
    out["mean"] = _mean_of([out[n] for n in names])
    return out


def _default_names(n: int) -> list[str]:
    if n == 3:
        return list(REGION_NAMES)
    return [f"region{i}" for i in range(n)]


def _mean_of(rows: list[dict[str, float]]) -> dict[str, float]:
    mean: dict[str, float] = {}
    for key in rows[0]:
        vals = np.array([r[key] for r in rows], dtype=float)
        if key == "hd95":
            finite = vals[np.isfinite(vals)]
            mean[key] = float(finite.mean()) if finite.size else math.nan
        else:
            mean[key] = float(vals.mean())
    return mean


# ----------------------------------------------------------------------------- torch side


def _binarise(output, threshold: float, activation: str):
    """(B, C, *spatial) bool predictions from network outputs."""
    import torch

    output = output.detach()
    if activation == "auto":
        if output.dtype == torch.bool:
            return output
        lo, hi = float(output.min()), float(output.max())
        activation = "sigmoid" if (lo < 0.0 or hi > 1.0) else "none"
    if activation == "softmax":  # class logits (SegFormer, CE)
        return output_kind("multiclass").predicted_mask(output)
    if activation == "sigmoid":
        return output_kind("binary").predicted_mask(output.float(), threshold)
    if activation != "none":
        raise TumorSegError(f"unknown activation {activation!r}")
    return output > threshold


def per_sample_metrics(
    output,
    target,
    threshold: float = 0.5,
    spacing=None,
    activation: str = "auto",
    names: Sequence[str] | None = None,
    hd: bool = True,
) -> list[dict[str, float]]:
    """Metrics of every sample of a batch, as flat dicts.

    ``output``: (B, C, *spatial) logits or probabilities (``activation`` "sigmoid",
    "softmax" for class logits, "none" for probabilities, or "auto": sigmoid when any
    value lies outside [0, 1]). ``target``: (B, C, *spatial) or (B, *spatial); values > 0
    are foreground. With C > 1 region channels each metric is reported per region as
    ``"<metric>_<name>"`` and the plain ``"<metric>"`` is the mean over regions.
    """
    import torch

    pred = _binarise(output, threshold, activation)
    target = torch.as_tensor(target).detach()
    if target.ndim == pred.ndim - 1:
        target = target.unsqueeze(1)
    target = target > 0
    if target.shape != pred.shape:
        raise TumorSegError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    n_ch = pred.shape[1]
    dims = tuple(range(2, pred.ndim))
    tp = (pred & target).sum(dims).double()
    n_pred = pred.sum(dims).double()
    n_true = target.sum(dims).double()
    fp, fn = n_pred - tp, n_true - tp
    tn = float(np.prod(pred.shape[2:])) - tp - fp - fn
    pred_np = pred.cpu().numpy() if hd else None
    target_np = target.cpu().numpy() if hd else None
    names = list(names) if names is not None else (_default_names(n_ch) if n_ch > 1 else [""])
    rows = []
    for b in range(pred.shape[0]):
        regions = []
        for c in range(n_ch):
            m = metrics_from_counts(
                float(tp[b, c]), float(fp[b, c]), float(fn[b, c]), float(tn[b, c])
            )
            if hd:
                m["hd95"] = hd95(pred_np[b, c], target_np[b, c], spacing)
            regions.append(m)
        if n_ch == 1:
            rows.append(regions[0])
            continue
        row = _mean_of(regions)
        for name, m in zip(names, regions):
            row.update({f"{k}_{name}": v for k, v in m.items()})
        rows.append(row)
    return rows


def batch_metrics(output, target, **options) -> dict[str, float]:
    """Per-sample means of :func:`per_sample_metrics` (same ``options``) over the batch
    (hd95 over finite values)."""
    avg = MetricAverager()
    avg.extend(per_sample_metrics(output, target, **options))
    return avg.compute()


class MetricAverager:
    """Accumulates per-image metrics over batches; ``compute()`` gives the per-image means.

    Any key starting with ``hd`` is averaged over its finite values only; the number of
    images left out is reported as ``"<key>_undefined"``.
    """

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._undefined: dict[str, int] = {}
        self.n = 0

    def reset(self) -> None:
        self.__init__()

    def update(self, output, target, **kwargs) -> list[dict[str, float]]:
        """Compute per-sample metrics of a batch (see :func:`per_sample_metrics`) and add them."""
        rows = per_sample_metrics(output, target, **kwargs)
        self.extend(rows)
        return rows

    def extend(self, rows: Sequence[dict[str, float]]) -> None:
        for row in rows:
            self.add(row)

    def add(self, row: dict[str, float]) -> None:
        self.n += 1
        for key, val in row.items():
            val = float(val)
            if key.startswith("hd") and not math.isfinite(val):
                self._undefined[key] = self._undefined.get(key, 0) + 1
                self._sums.setdefault(key, 0.0)
                self._counts.setdefault(key, 0)
                continue
            self._sums[key] = self._sums.get(key, 0.0) + val
            self._counts[key] = self._counts.get(key, 0) + 1

    def compute(self) -> dict[str, float]:
        out = {
            k: (self._sums[k] / self._counts[k]) if self._counts[k] else math.nan
            for k in self._sums
        }
        for key in self._sums:
            if key.startswith("hd"):
                out[f"{key}_undefined"] = float(self._undefined.get(key, 0))
        return out
