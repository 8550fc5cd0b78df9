"""Metrics against MONAI (the oracle) on real tumour masks."""

from __future__ import annotations

import math
import warnings

import nibabel as nib
import numpy as np
import pydicom
import pytest
import tifffile
import torch
from monai.metrics import (
    ConfusionMatrixMetric,
    DiceMetric,
    MeanIoU,
    compute_hausdorff_distance,
)
from scipy import ndimage

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.metrics import (
    MetricAverager,
    batch_metrics,
    hd95,
    multi_region_metrics,
    per_sample_metrics,
    segmentation_metrics,
)


def monai_reference(pred: np.ndarray, target: np.ndarray, spacing) -> dict[str, float]:
    """The same metrics from MONAI, for one pair of binary masks."""
    p = torch.from_numpy(pred.astype(np.float32))[None, None]
    t = torch.from_numpy(target.astype(np.float32))[None, None]
    dice = DiceMetric(include_background=True, reduction="none", ignore_empty=False)(p, t)
    iou = MeanIoU(include_background=True, reduction="none", ignore_empty=False)(p, t)
    cm = ConfusionMatrixMetric(
        include_background=True,
        metric_name=["precision", "recall", "accuracy", "balanced accuracy"],
        reduction="none",
    )
    cm(p, t)
    prec, rec, acc, bacc = (x.item() for x in cm.aggregate())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = compute_hausdorff_distance(
            p, t, include_background=True, percentile=95, spacing=list(spacing)
        ).item()
    return {
        "dice": dice.item(),
        "iou": iou.item(),
        "precision": prec,
        "recall": rec,
        "pixel_accuracy": acc,
        "mean_accuracy": bacc,
        "hd95": hd,
    }


def assert_matches_monai(ours: dict, ref: dict) -> None:
    for key, val in ref.items():
        assert ours[key] == pytest.approx(val, rel=1e-5, abs=1e-5), key


@pytest.fixture(scope="module")
def brats_truth(shared_data) -> np.ndarray:
    img = nib.load(shared_data / "brats2012_hg0015" / "BRATS_HG0015_truth.nii.gz")
    return np.asarray(img.dataobj)


@pytest.fixture(scope="module")
def brainix_roi(shared_data) -> tuple[np.ndarray, tuple[float, float, float]]:
    """BRAINIX ROI series as a (z, y, x) mask, slices ordered along the normal."""
    files = sorted((shared_data / "dicom_brainix" / "ROI").glob("*.dcm"))
    ds = [pydicom.dcmread(f) for f in files]
    iop = np.array(ds[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    ds.sort(key=lambda d: float(np.dot(normal, np.array(d.ImagePositionPatient, float))))
    pos = [float(np.dot(normal, np.array(d.ImagePositionPatient, float))) for d in ds]
    dz = float(np.median(np.diff(pos)))
    dy, dx = (float(v) for v in ds[0].PixelSpacing)
    return np.stack([d.pixel_array for d in ds]) > 0, (dz, dy, dx)


@pytest.mark.parametrize(
    "perturb",
    ["erode_shift", "dilate", "open_close"],
)
def test_brats_volume_matches_monai(brats_truth, perturb):
    target = brats_truth > 0
    if perturb == "erode_shift":
        pred = np.roll(ndimage.binary_erosion(target, iterations=2), 3, axis=0)
    elif perturb == "dilate":
        pred = ndimage.binary_dilation(target, iterations=3)
    else:
        pred = ndimage.binary_closing(ndimage.binary_opening(target, iterations=2), iterations=2)
    spacing = (2.5, 1.2, 0.9)  # anisotropic, to exercise sampling=spacing
    ours = segmentation_metrics(pred, target, spacing)
    assert_matches_monai(ours, monai_reference(pred, target, spacing))
    assert 0.5 < ours["dice"] < 1.0
    assert ours["hd95"] > 0.9


def test_brainix_roi_matches_monai(brainix_roi):
    target, spacing = brainix_roi
    assert spacing[0] == pytest.approx(6.0, abs=1e-3)
    pred = np.roll(target, (1, -2, 3), axis=(0, 1, 2))
    ours = segmentation_metrics(pred, target, spacing)
    assert_matches_monai(ours, monai_reference(pred, target, spacing))


def test_lgg_slices_2d_match_monai(shared_data):
    folder = shared_data / "lgg_kaggle3m" / "TCGA_CS_4941_19960909"
    for n in (11, 14, 18):
        target = tifffile.imread(folder / f"TCGA_CS_4941_19960909_{n}_mask.tif") > 0
        pred = ndimage.binary_dilation(np.roll(target, 2, axis=1), iterations=2)
        ours = segmentation_metrics(pred, target, spacing=(0.94, 0.94))
        assert_matches_monai(ours, monai_reference(pred, target, (0.94, 0.94)))


def test_mean_accuracy_is_seed003_class_mean():
    target = np.zeros((10, 10), bool)
    target[:5] = True
    pred = np.zeros_like(target)
    pred[:5, :5] = True  # half the tumour, no false positives
    m = segmentation_metrics(pred, target)
    assert m["mean_accuracy"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["pixel_accuracy"] == pytest.approx(75 / 100)


def test_empty_mask_policy():
    empty = np.zeros((8, 8, 8), bool)
    blob = empty.copy()
    blob[2:5, 2:5, 2:5] = True
    both = segmentation_metrics(empty, empty)
    assert both["dice"] == both["iou"] == both["precision"] == both["recall"] == 1.0
    assert both["hd95"] == 0.0
    miss = segmentation_metrics(empty, blob)
    assert miss["dice"] == miss["iou"] == miss["precision"] == miss["recall"] == 0.0
    assert math.isinf(miss["hd95"])
    false_alarm = segmentation_metrics(blob, empty)
    assert false_alarm["dice"] == 0.0 and math.isinf(false_alarm["hd95"])
    # MONAI agrees on dice/iou with ignore_empty=False, and its plain Hausdorff is inf too.
    ref = monai_reference(empty, blob, (1, 1, 1))
    assert ref["dice"] == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e, b = (torch.from_numpy(x.astype(np.float32))[None, None] for x in (empty, blob))
        assert math.isinf(compute_hausdorff_distance(e, b, include_background=True).item())
    assert monai_reference(empty, empty, (1, 1, 1))["dice"] == 1.0


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(TumorSegError, match="differ in shape"):
        segmentation_metrics(np.zeros((4, 4)), np.zeros((4, 5)))


def test_multi_region_brats2013(shared_data):
    path = shared_data / "brats2013_deepmedic" / "validation" / "brats_2013_pat0003_1"
    lab = np.asarray(nib.load(path / "OTMultiClass.nii.gz").dataobj).astype(np.uint8)
    box = ndimage.find_objects((lab > 0).astype(np.uint8))[0]
    lab = lab[box]
    # BraTS regions: WT = any tumour label, TC = necrosis + non-enhancing + enhancing, ET = 4.
    target = np.stack([lab > 0, np.isin(lab, (1, 3, 4)), lab == 4])
    pred = np.stack([ndimage.binary_erosion(r, iterations=1) for r in target])
    pred[2] = np.roll(target[2], 2, axis=1)
    spacing = (1.0, 1.0, 1.0)
    out = multi_region_metrics(pred, target, spacing)
    assert set(out) == {"WT", "TC", "ET", "mean"}
    for i, name in enumerate(("WT", "TC", "ET")):
        assert_matches_monai(out[name], monai_reference(pred[i], target[i], spacing))
    for key in ("dice", "hd95"):
        assert out["mean"][key] == pytest.approx(np.mean([out[n][key] for n in ("WT", "TC", "ET")]))


def _lgg_batch(shared_data):
    folder = shared_data / "lgg_kaggle3m" / "TCGA_CS_4941_19960909"
    masks = [
        tifffile.imread(folder / f"TCGA_CS_4941_19960909_{n}_mask.tif") > 0 for n in (10, 12, 15, 17)
    ]
    target = torch.from_numpy(np.stack(masks)[:, None].astype(np.float32))
    # Logits whose 0-level set is a dilated, shifted copy of the truth (slice 10 is empty:
    # the prediction there is empty too, so the both-empty policy is exercised).
    pred = np.stack([ndimage.binary_dilation(np.roll(m, 3, axis=0), iterations=1) for m in masks])
    logits = torch.from_numpy(np.where(pred, 2.5, -3.0).astype(np.float32))[:, None]
    return logits, target, pred


def test_batch_metrics_match_monai_per_sample(shared_data):
    logits, target, pred = _lgg_batch(shared_data)
    rows = per_sample_metrics(logits, target, spacing=(0.94, 0.94), activation="sigmoid")
    for row, p, t in zip(rows, pred, target.numpy()[:, 0] > 0):
        ref = monai_reference(p, t, (0.94, 0.94))
        if not t.any() and not p.any():
            # Our documented both-empty policy; MONAI leaves these 0/0 ratios NaN.
            assert math.isnan(ref["precision"]) and math.isnan(ref["hd95"])
            ref.update(precision=1.0, recall=1.0, mean_accuracy=1.0, hd95=0.0)
        assert_matches_monai(row, ref)
    mean = batch_metrics(logits, target, spacing=(0.94, 0.94))  # auto -> sigmoid
    assert mean["dice"] == pytest.approx(np.mean([r["dice"] for r in rows]))
    probs = torch.sigmoid(logits)
    assert batch_metrics(probs, target, spacing=(0.94, 0.94), activation="none") == mean


def test_averager_over_batches_is_per_image_mean(shared_data):
    logits, target, _ = _lgg_batch(shared_data)
    avg = MetricAverager()
    avg.update(logits[:1], target[:1], spacing=(0.94, 0.94))
    avg.update(logits[1:], target[1:], spacing=(0.94, 0.94))
    whole = batch_metrics(logits, target, spacing=(0.94, 0.94))
    got = avg.compute()
    for key, val in whole.items():
        assert got[key] == pytest.approx(val), key
    assert avg.n == 4


def test_averager_skips_undefined_hd95():
    avg = MetricAverager()
    avg.add({"dice": 1.0, "hd95": 2.0})
    avg.add({"dice": 0.0, "hd95": math.inf})
    out = avg.compute()
    assert out["dice"] == 0.5 and out["hd95"] == 2.0 and out["hd95_undefined"] == 1.0


def test_region_batch_and_softmax():
    target = torch.zeros(2, 3, 16, 16)
    target[:, :, 4:12, 4:12] = 1
    target[:, 1:, 6:10, 6:10] = 0
    out = batch_metrics(target * 10 - 5, target, spacing=(1.0, 1.0))
    for name in ("WT", "TC", "ET"):
        assert out[f"dice_{name}"] == 1.0 and out[f"hd95_{name}"] == 0.0
    assert out["dice"] == 1.0
    logits = torch.stack([1 - target[:, 0], target[:, 0]], dim=1)
    assert batch_metrics(logits, target[:, 0], activation="softmax", hd=False)["iou"] == 1.0


def test_hd95_2d_in_mm():
    a = np.zeros((40, 40), bool)
    a[10:20, 10:20] = True
    b = np.roll(a, 4, axis=1)
    # Every surface point moves 4 columns; the faces parallel to the move are 4 px apart.
    assert hd95(a, b, spacing=(1.0, 0.5)) == pytest.approx(2.0)
    assert hd95(a, b, spacing=(3.0, 0.5)) == pytest.approx(2.0)
