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


# -- lesion by lesion (issue 14) ---------------------------------------------------------------


def _angle_deg(a, b, spacing_yx) -> float:
    """Angle between two segments given as (z, y, x) voxel ends, in millimetres."""
    sp = np.asarray(spacing_yx, float)
    u = (np.asarray(a[1], float)[1:] - np.asarray(a[0], float)[1:]) * sp
    v = (np.asarray(b[1], float)[1:] - np.asarray(b[0], float)[1:]) * sp
    cos = abs(u @ v) / (np.linalg.norm(u) * np.linalg.norm(v))
    return math.degrees(math.acos(min(1.0, cos)))


def _length(ends, spacing_yx) -> float:
    (_, y0, x0), (_, y1, x1) = ends
    return math.hypot((y1 - y0) * spacing_yx[0], (x1 - x0) * spacing_yx[1])


def _check_lesion_geometry(les, mask3d, spacing):
    """What must hold for any lesion: ends on its slice and inside it, perpendicular <= longest,
    90 degrees in mm, lengths equal to the distances between the ends."""
    sp = spacing[1:]
    z = les["slice"]
    assert les["slices"][0] <= z <= les["slices"][1]
    for y, x in (e[1:] for e in les["diameter_endpoints"] + les["perpendicular_endpoints"]):
        assert mask3d[z, int(round(y)), int(round(x))], (y, x)
    assert all(e[0] == z for e in les["diameter_endpoints"] + les["perpendicular_endpoints"])
    assert les["perpendicular_mm"] <= les["diameter_mm"] + 1e-9
    assert _length(les["diameter_endpoints"], sp) == pytest.approx(les["diameter_mm"], abs=1e-9)
    assert _length(les["perpendicular_endpoints"], sp) == pytest.approx(les["perpendicular_mm"], abs=1e-6)
    assert les["product_mm2"] == pytest.approx(les["diameter_mm"] * les["perpendicular_mm"])
    if les["perpendicular_mm"] > 0:
        assert _angle_deg(les["diameter_endpoints"], les["perpendicular_endpoints"], sp) == pytest.approx(90, abs=0.01)


@pytest.mark.parametrize("spacing_yx", [(1.0, 1.0), (0.8, 0.5), (0.5, 1.25)])
def test_rectangle_40_by_20_mm(spacing_yx):
    """Known answer. Pixel centres of a 40 x 20 mm rectangle span a = 40 - dx by b = 20 - dy;
    the longest diameter is their diagonal, and the longest chord perpendicular to it runs
    from one long side to the other: b / cos(angle) = b * L / a."""
    dy, dx = spacing_yx
    ny, nx = round(20 / dy), round(40 / dx)
    img = np.zeros((ny + 8, nx + 8), np.uint8)
    img[4:4 + ny, 4:4 + nx] = 1
    m = measure(img, spacing_yx)
    assert m["n_lesions"] == 1
    les = m["lesions"][0]
    a, b = (nx - 1) * dx, (ny - 1) * dy
    longest = math.hypot(a, b)
    assert les["diameter_mm"] == pytest.approx(longest, rel=1e-12)
    assert les["perpendicular_mm"] == pytest.approx(b * longest / a, abs=1e-4)
    assert les["product_mm2"] == pytest.approx(b * longest**2 / a, abs=1e-2)
    # The perpendicular spans the short side (top row to bottom row) and crosses the diagonal
    # at the rectangle's centre, the cross a radiologist draws.
    ys = sorted(e[1] for e in les["perpendicular_endpoints"])
    assert ys == pytest.approx([4, 4 + ny - 1], abs=1e-4)
    mid = np.mean(np.array(les["perpendicular_endpoints"])[:, 1:], axis=0)
    assert mid == pytest.approx([4 + (ny - 1) / 2, 4 + (nx - 1) / 2], abs=0.3)
    _check_lesion_geometry(les, img[None] > 0, (1.0, *spacing_yx))
    # Case figures are this lesion's.
    assert m["largest_axial_diameter_mm"] == les["diameter_mm"]
    assert m["perpendicular_diameter_mm"] == les["perpendicular_mm"]
    assert m["bidimensional_product_mm2"] == les["product_mm2"]


@pytest.mark.parametrize("spacing_yx", [(1.0, 1.0), (0.7, 0.45)])
def test_rotated_ellipse_diameters_are_its_axes(spacing_yx):
    """An ellipse (semi-axes 25 and 12 mm, turned 30 degrees): longest = major axis, the
    perpendicular chord = minor axis, within the pixel-centre discretisation."""
    dy, dx = spacing_yx
    A, B, th = 25.0, 12.0, math.radians(30)
    yy, xx = np.mgrid[:int(60 / dy), :int(60 / dx)]
    Y, X = (yy - yy.shape[0] // 2) * dy, (xx - xx.shape[1] // 2) * dx
    u, v = X * math.cos(th) + Y * math.sin(th), -X * math.sin(th) + Y * math.cos(th)
    ell = (u / A) ** 2 + (v / B) ** 2 <= 1
    les = measure(ell, spacing_yx)["lesions"][0]
    px = math.hypot(dy, dx)
    assert 2 * A - px <= les["diameter_mm"] <= 2 * A
    # The pixel-centre extremes of a blunt tip can tilt the longest diameter a few degrees
    # off the major axis; a chord through the centre 5 degrees off the minor axis is 0.3 %
    # longer than it.
    assert 2 * B - 2 * px <= les["perpendicular_mm"] <= 2 * B * 1.003
    # The longest diameter lies along the major axis (30 degrees), in mm.
    (_, y0, x0), (_, y1, x1) = les["diameter_endpoints"]
    ang = math.degrees(math.atan2((y1 - y0) * dy, (x1 - x0) * dx)) % 180
    assert ang == pytest.approx(30, abs=5)
    _check_lesion_geometry(les, ell[None], (1.0, *spacing_yx))


def test_l_shape_perpendicular_is_a_chord_not_the_projection():
    """An L of two 40 x 10-pixel arms: the longest diameter runs corner to corner (45 degrees)
    outside the L; the longest chord perpendicular to it INSIDE the L is the thickness of an
    arm across the diagonal, 9 * sqrt(2) between pixel centres - not the L's 28+ mm shadow
    on that axis."""
    img = np.zeros((60, 60), np.uint8)
    img[5:45, 5:15] = 1
    img[35:45, 5:45] = 1
    les = measure(img, (1.0, 1.0))["lesions"][0]
    assert les["diameter_mm"] == pytest.approx(39 * math.sqrt(2))
    assert les["perpendicular_mm"] == pytest.approx(9 * math.sqrt(2), abs=1e-4)
    # The projection of the whole L on the perpendicular axis is much wider.
    pts = np.argwhere(img) * 1.0
    n = np.array([1.0, 1.0]) / math.sqrt(2)
    assert np.ptp(pts @ n) > 2 * les["perpendicular_mm"]
    # Every point of the chord lies in the L.
    (_, y0, x0), (_, y1, x1) = les["perpendicular_endpoints"]
    for f in np.linspace(0, 1, 50):
        assert img[int(round(y0 + f * (y1 - y0))), int(round(x0 + f * (x1 - x0)))]
    _check_lesion_geometry(les, img[None] > 0, (1.0, 1.0, 1.0))


def test_two_separate_discs_are_two_lesions_and_never_one_diameter():
    """The issue's defect: the case diameter spanned two blobs. Two discs (radius 10 and
    6 mm) 60 mm apart on the same slices: two lesions, each measured on its own."""
    spacing = (3.0, 0.5, 0.5)
    vol = np.zeros((4, 80, 200), np.uint8)
    yy, xx = np.mgrid[:80, :200]
    big = ((yy - 40) * 0.5) ** 2 + ((xx - 40) * 0.5) ** 2 <= 10**2
    small = ((yy - 40) * 0.5) ** 2 + ((xx - 160) * 0.5) ** 2 <= 6**2
    vol[1:3][:, big] = 1
    vol[1:3][:, small] = 2
    m = measure(vol, spacing)
    assert m["n_lesions"] == 2 and len(m["lesions"]) == 2
    first, second = m["lesions"]
    assert first["volume_ml"] > second["volume_ml"]
    assert first["labels"] == [1] and second["labels"] == [2]
    assert 20 - 1.0 <= first["diameter_mm"] <= 20 and 12 - 1.0 <= second["diameter_mm"] <= 12
    assert first["perpendicular_mm"] == pytest.approx(first["diameter_mm"], abs=1.0)
    assert first["voxel_count"] == 2 * big.sum() and second["voxel_count"] == 2 * small.sum()
    assert first["volume_ml"] == pytest.approx(2 * big.sum() * 3 * 0.25 / 1000)
    assert first["centroid_zyx"] == pytest.approx([1.5, 40, 40])
    assert first["slices"] == [1, 2]
    # The case diameter is the big disc's, not the 80 mm across both.
    assert m["largest_axial_diameter_mm"] == first["diameter_mm"] < 21
    assert m["diameter_lesion"] == 1
    across = pdist(np.argwhere(vol[1] > 0) * 0.5).max()
    assert across > 75
    assert largest_axial_diameter(vol, spacing)["diameter_mm"] == first["diameter_mm"]
    for les in m["lesions"]:
        _check_lesion_geometry(les, vol > 0, spacing)


def test_lesion_is_measured_on_the_slice_of_its_own_widest_cross_section():
    """A 3D ellipsoid next to a large flat lesion: each is measured on its own widest slice."""
    spacing = (2.0, 1.0, 1.0)
    zz, yy, xx = np.mgrid[:21, :64, :120]
    ball = ((zz - 10) * 2.0) ** 2 + (yy - 32.0) ** 2 + (xx - 30.0) ** 2 <= 15**2
    vol = ball.astype(np.uint8)
    vol[3, 10:50, 60:115] = 1  # a flat slab far from the ball, on slice 3 only
    m = measure(vol, spacing)
    ball_les = next(les for les in m["lesions"] if les["slices"] == [3, 17])
    assert ball_les["slice"] == 10
    assert ball_les["diameter_mm"] == pytest.approx(30, abs=1.5)
    slab = next(les for les in m["lesions"] if les["slices"] == [3, 3])
    assert slab["slice"] == 3
    assert slab["diameter_mm"] == pytest.approx(math.hypot(39, 54))
    assert m["largest_axial_diameter_mm"] == slab["diameter_mm"]
    assert m["diameter_slice"] == 3
    assert ball_les["bbox_zyx"] == [[3, 17, 15], [17, 47, 45]]


def test_result_is_plain_json_with_every_lesion():
    import json

    vol = np.zeros((3, 100, 100), np.uint8)
    for k in range(30):  # 30 separate specks and one big lesion
        y, x = divmod(k, 6)
        vol[1, 5 + 6 * y, 60 + 6 * x] = 1
    vol[:, 10:40, 10:40] = 2
    m = measure(vol, (1.0, 1.0, 1.0))
    text = json.dumps(m, allow_nan=False)
    assert json.loads(text) == m
    assert m["n_lesions"] == 31 and len(m["lesions"]) == 31
    assert [les["lesion"] for les in m["lesions"]] == list(range(1, 32))
    vols = [les["volume_ml"] for les in m["lesions"]]
    assert vols == sorted(vols, reverse=True)
    report = format_report(m)
    assert "lesion 20:" in report and "lesion 21:" not in report
    assert "... and 11 more lesions" in report
    assert "lesion 31:" in format_report(m, cap=None)
    speck = next(les for les in m["lesions"] if les["centroid_zyx"] == [1.0, 5.0, 60.0])
    assert speck["voxel_count"] == 1 and speck["labels"] == [1] and speck["slices"] == [1, 1]
    assert speck["diameter_mm"] == speck["perpendicular_mm"] == speck["product_mm2"] == 0.0
    assert speck["diameter_endpoints"] == [[1.0, 5.0, 60.0]] * 2


def test_regions_only_when_brats_is_said():
    vol = np.zeros((2, 10, 10), np.uint8)
    vol[0, 2:6, 2:6] = 2
    vol[0, 3:5, 3:5] = 4
    vol[1, 3:5, 3:5] = 1
    assert "regions" not in measure(vol, (1, 1, 1))
    r = measure(vol, (1, 1, 1), brats=True)["regions"]
    assert r["convention"] == "brats"
    assert (r["WT"]["voxel_count"], r["TC"]["voxel_count"], r["ET"]["voxel_count"]) == (20, 8, 4)
    # The region map a regions model predicts says so by its label names.
    from napari_tumorseg.brats import REGION_LABEL_NAMES

    rmap = np.minimum(vol, 3)
    names = {k: v for k, v in REGION_LABEL_NAMES.items() if k}
    r = measure(rmap, (1, 1, 1), names)["regions"]
    assert r["convention"] == "regionmap"
    assert r["WT"]["voxel_count"] == np.count_nonzero(rmap)
    assert r["ET"]["voxel_count"] == np.count_nonzero(rmap == 3)
    # A binary mask has no regions, whatever its name; asked for, it is refused.
    binary = (vol > 0).astype(np.uint8)
    assert "regions" not in measure(binary, (1, 1, 1), {1: "tumour"})
    with pytest.raises(TumorSegError, match="binary mask"):
        measure(binary, (1, 1, 1), brats=True)
    # 1-3 without 4 is BraTS 2023 or 2013: auto does not guess; named, it is measured.
    v23 = np.array([[[1, 2, 3, 0]]], np.uint8)
    with pytest.raises(TumorSegError, match="brats2023"):
        measure(v23, (1, 1, 1), brats=True)
    assert measure(v23, (1, 1, 1), brats="brats2023")["regions"]["ET"]["voxel_count"] == 1
    with pytest.raises(TumorSegError, match="label 7"):
        measure(np.array([[[1, 7]]]), (1, 1, 1), brats="brats")


def test_brainix_roi_lesions_through_the_readers(shared_data):
    from napari_tumorseg.io.readers import read_path

    (roi,) = read_path(shared_data / "dicom_brainix" / "ROI")
    labels, spacing = np.asarray(roi.data), roi.spacing
    assert spacing[0] == pytest.approx(6.0, abs=1e-3)
    m = measure(labels, spacing)
    vv = float(np.prod(spacing)) / 1000
    count = int(np.count_nonzero(labels))
    assert "regions" not in m  # a binary ROI
    assert sum(les["voxel_count"] for les in m["lesions"]) == count == m["voxel_count"]
    assert sum(les["volume_ml"] for les in m["lesions"]) == pytest.approx(count * vv, rel=1e-12)
    assert m["largest_axial_diameter_mm"] == max(les["diameter_mm"] for les in m["lesions"])
    for les in m["lesions"]:
        _check_lesion_geometry(les, labels > 0, spacing)
    top = m["lesions"][0]
    assert 20 < top["diameter_mm"] < 288 * spacing[1] and top["perpendicular_mm"] > 10


def test_brats2013_regions_and_lesions(shared_data):
    import time

    from napari_tumorseg.io.readers import read_path

    path = shared_data / "brats2013_deepmedic" / "train" / "brats_2013_pat0005_1" / "OTMultiClass.nii.gz"
    (vol,) = read_path(path)
    labels, spacing = np.asarray(vol.data).astype(np.uint8), vol.spacing
    t0 = time.perf_counter()
    m = measure(labels, spacing, brats=True)
    assert time.perf_counter() - t0 < 10  # 240x240x155: well under a second here
    vv = float(np.prod(spacing)) / 1000
    r = m["regions"]
    assert r["convention"] == "brats"
    wt, tc, et = np.isin(labels, (1, 2, 3, 4)), np.isin(labels, (1, 3, 4)), labels == 4
    assert not (tc & ~wt).any() and not (et & ~tc).any()  # WT ⊇ TC ⊇ ET
    for name, mask in (("WT", wt), ("TC", tc), ("ET", et)):
        assert r[name]["voxel_count"] == int(mask.sum())
        assert r[name]["volume_ml"] == pytest.approx(mask.sum() * vv, rel=1e-12)
    assert r["WT"]["volume_ml"] >= r["TC"]["volume_ml"] >= r["ET"]["volume_ml"] > 0
    # Several lesions, all listed, each region split among them.
    assert m["n_lesions"] == 9
    for name in ("WT", "TC", "ET"):
        assert sum(les["regions_ml"][name] for les in m["lesions"]) == pytest.approx(r[name]["volume_ml"])
    # Each lesion's diameter is the one it has alone in the volume, and the case's is the largest.
    comp, n = ndimage.label(labels > 0, structure=np.ones((3, 3, 3)))
    for les in m["lesions"][:3]:
        z, y, x = (int(round(c)) for c in les["diameter_endpoints"][0])
        alone = comp == comp[z, y, x]
        assert largest_axial_diameter(alone, spacing)["diameter_mm"] == pytest.approx(les["diameter_mm"])
        _check_lesion_geometry(les, labels > 0, spacing)
    assert m["largest_axial_diameter_mm"] == max(les["diameter_mm"] for les in m["lesions"])
    # --label 4 (the enhancing part, as RANO measures it): lesions of label 4 alone.
    et_only = measure(labels, spacing, brats=True, lesion_labels=[4])
    assert et_only["voxel_count"] == int(et.sum())
    assert all(les["labels"] == [4] for les in et_only["lesions"])
    assert et_only["regions"] == r


def test_rano_measurability_of_each_lesion(shared_data):
    """RANO measures a lesion whose two perpendicular diameters are both >= 10 mm on two or more
    slices; smaller lesions (a prediction's specks) are listed as non-measurable, not hidden."""
    from napari_tumorseg.io.readers import read_path
    from napari_tumorseg.measurements import format_report, measure

    vol = np.zeros((8, 64, 64), np.uint8)
    vol[1:4, 5:17, 5:17] = 1      # 12 x 12 mm on three slices: measurable
    vol[1:4, 30:38, 30:48] = 1    # 18 x 8 mm: the perpendicular is short
    vol[6, 40:55, 5:20] = 1       # 15 x 15 mm on one slice
    m = measure(vol, (1.0, 1.0, 1.0))
    measurable = {tuple(les["bbox_zyx"][0]): les["measurable"] for les in m["lesions"]}
    assert measurable == {(1, 5, 5): True, (1, 30, 30): False, (6, 40, 5): False}
    assert m["n_measurable"] == 1 and m["n_lesions"] == 3
    text = format_report(m)
    assert text.count("non-measurable (RANO") == 2 and "measurable (RANO" in text
    # a real tumour: BraTS2021_00006's whole tumour is one measurable lesion
    seg = read_path(shared_data / "brats_multi_year" / "BraTS2021_00006" / "BraTS2021_00006_seg.nii.gz")[0]
    real = measure(np.asarray(seg.data) > 0, seg.spacing)
    assert real["lesions"][0]["measurable"] and real["lesions"][0]["diameter_mm"] > 50
