"""``tumorseg evaluate`` on real masks, with MONAI as the oracle."""

from __future__ import annotations

import json
import warnings

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from monai.metrics import ConfusionMatrixMetric, DiceMetric, MeanIoU, compute_hausdorff_distance
from scipy import ndimage

from napari_tumorseg.cli import main


def _monai(pred: np.ndarray, gt: np.ndarray, spacing) -> dict[str, float]:
    p = torch.from_numpy((pred > 0).astype(np.float32))[None, None]
    t = torch.from_numpy((gt > 0).astype(np.float32))[None, None]
    cm = ConfusionMatrixMetric(include_background=True, metric_name=["precision", "recall"])
    cm(p, t)
    prec, rec = (x.item() for x in cm.aggregate())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = compute_hausdorff_distance(p, t, include_background=True, percentile=95,
                                        spacing=list(spacing)).item()
    return {
        "dice": DiceMetric(include_background=True)(p, t).item(),
        "iou": MeanIoU(include_background=True)(p, t).item(),
        "precision": prec,
        "recall": rec,
        "hd95_mm": hd,
    }


def _run_json(capsys, *args) -> dict:
    assert main(["evaluate", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def brats_truth(shared_data):
    path = shared_data / "brats2012_hg0015" / "BRATS_HG0015_truth.nii.gz"
    img = nib.load(path)
    return path, img, np.asarray(img.dataobj).astype(np.uint8)


def test_evaluate_agrees_with_monai_on_brats(brats_truth, tmp_path, capsys):
    gt_path, img, truth = brats_truth
    # The eroded copy keeps each voxel's label, so per-label scores are meaningful too.
    pred = ndimage.binary_erosion(truth > 0, iterations=2) * truth
    pred_path = tmp_path / "pred.nii.gz"
    nib.save(nib.Nifti1Image(pred.astype(np.uint8), img.affine), pred_path)
    out = _run_json(capsys, pred_path, gt_path)
    zooms = [float(z) for z in img.header.get_zooms()]
    ref = _monai(pred, truth, zooms)
    for key, val in ref.items():
        assert out[key] == pytest.approx(val, rel=1e-5, abs=1e-5), key
    assert out["gt_volume_ml"] == pytest.approx(np.count_nonzero(truth) * np.prod(zooms) / 1000)
    assert out["pred_volume_ml"] == pytest.approx(np.count_nonzero(pred) * np.prod(zooms) / 1000)
    assert set(out["per_label"]) == {"1", "2"}
    for v in (1, 2):
        ref_v = _monai(pred == v, truth == v, zooms)
        for key, val in ref_v.items():
            assert out["per_label"][str(v)][key] == pytest.approx(val, rel=1e-5, abs=1e-5)
    # The text report carries the same numbers.
    assert main(["evaluate", str(pred_path), str(gt_path)]) == 0
    text = capsys.readouterr().out
    assert f"Dice: {ref['dice']:.4f}" in text and f"HD95: {ref['hd95_mm']:.2f} mm" in text
    assert "Label 2: Dice" in text


def test_evaluate_uses_anisotropic_spacing_in_mm(brats_truth, tmp_path, capsys):
    _, img, truth = brats_truth
    affine = np.diag([0.9, 1.1, 2.0, 1.0])
    gt = (truth > 0).astype(np.uint8)
    pred = np.roll(ndimage.binary_dilation(gt, iterations=1), 2, axis=2).astype(np.uint8)
    nib.save(nib.Nifti1Image(gt, affine), tmp_path / "gt_seg.nii.gz")
    nib.save(nib.Nifti1Image(pred, affine), tmp_path / "pred_seg.nii.gz")
    out = _run_json(capsys, tmp_path / "pred_seg.nii.gz", tmp_path / "gt_seg.nii.gz")
    ref = _monai(pred, gt, [0.9, 1.1, 2.0])
    assert out["hd95_mm"] == pytest.approx(ref["hd95_mm"], rel=1e-5)
    assert out["dice"] == pytest.approx(ref["dice"], rel=1e-6)
    assert out["gt_volume_ml"] == pytest.approx(gt.sum() * 0.9 * 1.1 * 2.0 / 1000)
    assert "per_label" not in out


def test_evaluate_tiff_and_dicom_masks(shared_data, tmp_path, capsys):
    folder = shared_data / "lgg_kaggle3m" / "TCGA_CS_4941_19960909"
    gt = np.stack([
        tifffile.imread(folder / f"TCGA_CS_4941_19960909_{n}_mask.tif") for n in range(10, 19)
    ])
    pred = np.roll(gt, 3, axis=2)
    tifffile.imwrite(tmp_path / "gt.tif", gt)
    tifffile.imwrite(tmp_path / "pred.tif", pred)
    out = _run_json(capsys, tmp_path / "pred.tif", tmp_path / "gt.tif")
    ref = _monai(pred, gt, [1.0, 1.0, 1.0])
    assert out["dice"] == pytest.approx(ref["dice"], rel=1e-6)
    assert out["hd95_mm"] == pytest.approx(ref["hd95_mm"], rel=1e-5)
    roi = shared_data / "dicom_brainix" / "ROI"
    same = _run_json(capsys, roi, roi)
    assert same["dice"] == 1.0 and same["hd95_mm"] == 0.0
    assert same["spacing_mm"][0] == pytest.approx(6.0, abs=1e-3)


def test_evaluate_empty_prediction_prints_undefined_hd95(brats_truth, tmp_path, capsys):
    gt_path, img, truth = brats_truth
    nib.save(nib.Nifti1Image(np.zeros_like(truth), img.affine), tmp_path / "empty_seg.nii.gz")
    out = _run_json(capsys, tmp_path / "empty_seg.nii.gz", gt_path)
    assert out["dice"] == 0.0 and out["hd95_mm"] is None and out["pred_volume_ml"] == 0.0


def test_evaluate_grid_mismatch_is_one_line(brats_truth, tmp_path, capsys):
    gt_path, img, truth = brats_truth
    nib.save(nib.Nifti1Image(truth[:-1], img.affine), tmp_path / "crop_seg.nii.gz")
    assert main(["evaluate", str(tmp_path / "crop_seg.nii.gz"), str(gt_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "different grids" in err
    shifted = img.affine.copy()
    shifted[:3, 3] += 5.0
    nib.save(nib.Nifti1Image(truth, shifted), tmp_path / "moved_seg.nii.gz")
    assert main(["evaluate", str(tmp_path / "moved_seg.nii.gz"), str(gt_path)]) == 2
    assert "different grids" in capsys.readouterr().err


def test_evaluate_refuses_an_image(shared_data, brats_truth, capsys):
    gt_path, _, _ = brats_truth
    flair = shared_data / "brats2012_hg0015" / "BRATS_HG0015_FLAIR.nii.gz"
    assert main(["evaluate", str(flair), str(gt_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a label mask" in err
