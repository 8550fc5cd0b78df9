"""Tumour volume, diameter and components in physical units."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pydicom
import pytest
from scipy import ndimage
from scipy.spatial.distance import pdist

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.measurements import (
    compare,
    component_volumes_ml,
    format_report,
    largest_axial_diameter,
    measure,
    slice_diameter,
    volume_ml,
)
from napari_tumorseg.metrics import segmentation_metrics


@pytest.fixture(scope="module")
def brainix_roi(shared_data):
    files = sorted((shared_data / "dicom_brainix" / "ROI").glob("*.dcm"))
    ds = [pydicom.dcmread(f) for f in files]
    iop = np.array(ds[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    pos = {id(d): float(np.dot(normal, np.array(d.ImagePositionPatient, float))) for d in ds}
    ds.sort(key=lambda d: pos[id(d)])
    dz = float(np.mean(np.diff([pos[id(d)] for d in ds])))
    dy, dx = (float(v) for v in ds[0].PixelSpacing)
    return ds, np.stack([d.pixel_array for d in ds]), (dz, dy, dx)


def test_brainix_roi_volume_is_count_times_voxel_volume(brainix_roi):
    ds, labels, spacing = brainix_roi
    # Slices are 6 mm apart although SliceThickness says 5: spacing must come from positions.
    assert spacing[0] == pytest.approx(6.0, abs=1e-3)
    assert float(ds[0].SliceThickness) == pytest.approx(5.0)
    count = sum(int(np.count_nonzero(d.pixel_array)) for d in ds)
    expected = count * spacing[0] * spacing[1] * spacing[2] / 1000.0
    assert count == 10482
    assert volume_ml(labels, spacing) == pytest.approx(expected, rel=1e-12)
    m = measure(labels, spacing)
    assert m["volume_ml"] == pytest.approx(expected, rel=1e-12)
    assert m["voxel_count"] == count
    assert sum(m["component_volumes_ml"]) == pytest.approx(expected)
    assert m["n_components"] >= 1
    assert 10 < m["largest_axial_diameter_mm"] < 288 * spacing[1]
    text = format_report(m)
    assert f"Tumour volume: {expected:.3f} mL" in text
    assert "Voxel spacing" in text


@pytest.mark.parametrize("spacing_yx", [(0.5, 0.8), (1.3, 0.4)])
def test_disc_diameter_at_anisotropic_spacing(spacing_yx):
    r_mm = 20.0
    dy, dx = spacing_yx
    ny, nx = int(2 * r_mm / dy) + 11, int(2 * r_mm / dx) + 11
    cy, cx = ny // 2, nx // 2
    yy, xx = np.mgrid[:ny, :nx]
    disc = ((yy - cy) * dy) ** 2 + ((xx - cx) * dx) ** 2 <= r_mm**2
    d_centres, ends = slice_diameter(disc, spacing_yx)
    # Oracle: brute force over every pixel centre of the disc (no hull shortcut).
    brute = pdist(np.argwhere(disc) * np.array(spacing_yx)).max()
    assert d_centres == pytest.approx(brute, rel=1e-12)
    assert 2 * r_mm - 2 * max(dy, dx) <= d_centres <= 2 * r_mm + 1e-9
    (y0, x0), (y1, x1) = ends
    assert math.hypot((y1 - y0) * dy, (x1 - x0) * dx) == pytest.approx(d_centres)
    d_corners, _ = slice_diameter(disc, spacing_yx, method="corners")
    assert 2 * r_mm <= d_corners <= 2 * r_mm + 2 * math.hypot(dy, dx)


def test_largest_axial_diameter_picks_the_widest_slice():
    vol = np.zeros((5, 60, 60), np.uint8)
    vol[1, 10:20, 10:20] = 1
    vol[3, 5:55, 30] = 2  # a thin line: collinear pixels, 49 pixels long
    vol[4, 30, 30] = 1
    res = largest_axial_diameter(vol, (3.0, 0.5, 0.7))
    assert res["slice"] == 3
    assert res["diameter_mm"] == pytest.approx(49 * 0.5)
    assert res["endpoints"][0][0] == 3.0


def test_components_are_26_connected():
    vol = np.zeros((6, 10, 10), bool)
    vol[1, 1, 1] = vol[2, 2, 2] = True  # touch at a corner only: one lesion
    vol[4:6, 6:9, 6:9] = True
    vols = component_volumes_ml(vol, (2.0, 1.0, 1.0))
    assert vols == pytest.approx([18 * 2 / 1000, 2 * 2 / 1000])
    assert measure(vol, (2.0, 1.0, 1.0))["n_components"] == 2


def test_per_label_volumes_use_names():
    vol = np.zeros((2, 4, 4), np.uint8)
    vol[0, :2, :2] = 1
    vol[1] = 3
    m = measure(vol, (1.0, 1.0, 1.0), label_names={1: "edema", 3: "enhancing"})
    assert m["label_volumes_ml"] == {"edema": 0.004, "enhancing": 0.016}
    assert "  edema: 0.004 mL" in format_report(m)


def test_compare_on_real_brats(shared_data):
    truth = np.asarray(
        nib.load(shared_data / "brats2012_hg0015" / "BRATS_HG0015_truth.nii.gz").dataobj
    )
    pred = ndimage.binary_erosion(truth > 0, iterations=2).astype(np.uint8)
    spacing = (1.0, 1.0, 1.0)
    res = compare(pred, truth, spacing)
    ref = segmentation_metrics(pred > 0, truth > 0, spacing)
    for key in ("dice", "iou", "precision", "recall"):
        assert res[key] == ref[key]
    assert res["hd95_mm"] == ref["hd95"]
    assert res["precision"] == 1.0  # an eroded copy has no false positives
    assert res["gt_volume_ml"] == pytest.approx(np.count_nonzero(truth) / 1000)
    assert res["pred_volume_ml"] < res["gt_volume_ml"]
    text = format_report(res, title="pred vs truth")
    assert text.splitlines()[0] == "pred vs truth"
    assert f"Dice: {res['dice']:.4f}" in text and "HD95:" in text


def test_compare_empty_prediction_reports_undefined_hd95():
    gt = np.zeros((4, 8, 8), bool)
    gt[1:3, 2:5, 2:5] = True
    res = compare(np.zeros_like(gt), gt, (1, 1, 1))
    assert res["dice"] == 0.0 and math.isinf(res["hd95_mm"])
    assert "HD95: undefined" in format_report(res)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(TumorSegError, match="spacing"):
        volume_ml(np.ones((2, 2, 2)), (1.0, -1.0, 1.0))
    with pytest.raises(TumorSegError, match="different grids"):
        compare(np.ones((2, 3, 3)), np.ones((2, 3, 4)), (1, 1, 1))
    with pytest.raises(TumorSegError, match="labels must be"):
        measure(np.ones((2, 2, 2, 2)), (1, 1, 1))
