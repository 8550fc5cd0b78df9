"""Correction tools on real masks: click-to-keep, fill holes, remove islands, move the border."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from scipy import ndimage

from napari_tumorseg.editing import fill_holes, keep_component_at, margin, remove_islands
from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.measurements import component_volumes_ml, label_components


@pytest.fixture(scope="module")
def roi(shared_data):
    files = sorted((shared_data / "dicom_brainix" / "ROI").glob("*.dcm"))
    ds = [pydicom.dcmread(f) for f in files]
    iop = np.array(ds[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    ds.sort(key=lambda d: float(np.dot(normal, np.array(d.ImagePositionPatient, float))))
    dy, dx = (float(v) for v in ds[0].PixelSpacing)
    return np.stack([d.pixel_array for d in ds]).astype(np.uint8), (6.0, dy, dx)


@pytest.fixture(scope="module")
def brats2013_labels(shared_data) -> np.ndarray:
    path = shared_data / "brats2013_deepmedic" / "validation" / "brats_2013_pat0003_1"
    lab = np.asarray(nib.load(path / "OTMultiClass.nii.gz").dataobj).astype(np.uint8)
    return lab[ndimage.find_objects((lab > 0).astype(np.uint8))[0]]


def _with_island(roi_labels: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
    lab = roi_labels.copy()
    # A separate 2x2x1 speck far from the tumour (corner of slice 0) makes >= 2 components.
    lab[0, 2:4, 2:4] = 1
    return lab, (0, 2, 2)


def test_keep_component_at_in_3d(roi):
    lab, speck = _with_island(roi[0])
    comp, n = label_components(lab)
    assert n >= 2
    sizes = np.bincount(comp.ravel())[1:]
    big = int(np.argmax(sizes)) + 1
    click = tuple(np.argwhere(comp == big)[0])
    res = keep_component_at(lab, click)
    assert res.changed
    np.testing.assert_array_equal(res.labels, np.where(comp == big, lab, 0))
    assert label_components(res.labels)[1] == 1
    assert lab[speck] == 1  # the input is not modified
    # Clicking the speck keeps only the speck.
    only = keep_component_at(lab, speck).labels
    assert np.count_nonzero(only) == 4
    assert component_volumes_ml(only, roi[1]) == pytest.approx([4 * 6.0 * roi[1][1] * roi[1][2] / 1000])


def test_keep_component_background_click_changes_nothing(roi):
    lab = roi[0]
    res = keep_component_at(lab, (0, 0, 0))
    assert not res.changed and "background" in res.message
    np.testing.assert_array_equal(res.labels, lab)


def test_keep_component_slice_only_leaves_other_slices(roi):
    lab, speck = _with_island(roi[0])
    z = int(np.argmax((lab > 0).sum(axis=(1, 2))))
    comp2d, n2d = ndimage.label(lab[z] > 0, structure=np.ones((3, 3)))
    click_yx = tuple(np.argwhere(comp2d == 1)[0])
    res = keep_component_at(lab, (z, *click_yx), slice_only=True)
    others = [k for k in range(lab.shape[0]) if k != z]
    np.testing.assert_array_equal(res.labels[others], lab[others])
    np.testing.assert_array_equal(res.labels[z] > 0, comp2d == 1)
    assert res.changed == (n2d > 1)


def test_fill_holes_restores_punched_hole_and_respects_other_labels(brats2013_labels):
    lab = brats2013_labels.copy()
    # Punch holes into the interior of the edema (label 2) in one slice.
    z = int(np.argmax((lab == 2).sum(axis=(1, 2))))
    inner = ndimage.binary_erosion(lab[z] == 2, iterations=3)
    ys, xs = np.nonzero(inner)
    holes = (ys[::50], xs[::50])
    lab[z][holes] = 0
    out3d = fill_holes(lab).labels
    out2d = fill_holes(lab, slice_only=True, z=z)
    assert out2d.changed
    for out in (out3d, out2d.labels):
        assert np.all(out[z][holes] == 2)
        # Only background was filled: every non-zero voxel keeps its value.
        assert np.all(out[lab > 0] == lab[lab > 0])


def test_fill_holes_3d_vs_slices():
    tube = np.zeros((5, 9, 9), np.uint8)
    tube[:, 2:7, 2:7] = 3
    tube[:, 4, 4] = 0  # a channel open at both ends of z: not a 3D hole
    assert not fill_holes(tube).changed
    filled = fill_holes(tube, slice_only=True)
    assert filled.changed and np.all(filled.labels[:, 4, 4] == 3)
    ring = np.zeros((7, 7), np.uint8)  # 2D input stays 2D
    ring[1:6, 1:6] = 1
    ring[3, 3] = 0
    assert fill_holes(ring, slice_only=True).labels[3, 3] == 1


def test_remove_islands_by_physical_volume(roi):
    lab, speck = _with_island(roi[0])
    spacing = roi[1]
    speck_mm3 = 4 * spacing[0] * spacing[1] * spacing[2]
    kept = remove_islands(lab, speck_mm3 * 0.99, spacing)
    assert kept.labels[speck] == 1
    res = remove_islands(lab, speck_mm3 * 1.01, spacing)
    assert res.changed and res.labels[speck] == 0
    # Everything that is not an island survives unchanged.
    comp, _ = label_components(lab)
    sizes = np.bincount(comp.ravel()) * spacing[0] * spacing[1] * spacing[2]
    survivors = sizes[comp] >= speck_mm3 * 1.01
    np.testing.assert_array_equal(res.labels, np.where(survivors & (lab > 0), lab, 0))


def test_bad_points_and_shapes():
    lab = np.zeros((2, 4, 4), np.uint8)
    with pytest.raises(TumorSegError, match="outside"):
        keep_component_at(lab, (5, 0, 0))
    with pytest.raises(TumorSegError, match="spacing"):
        remove_islands(lab, 10, (1.0, 0.0, 1.0))


def _distance_mm(mask: np.ndarray, spacing) -> np.ndarray:
    """Every voxel's distance (mm) to ``mask``, on the full volume (the reference the
    cropped implementation must equal)."""
    return ndimage.distance_transform_edt(~mask, sampling=spacing)


@pytest.mark.parametrize("mm", [1.0, 2.5])
def test_margin_grows_the_border_by_mm_with_the_nearest_label(brats2013_labels, mm):
    lab = np.pad(brats2013_labels, 6)  # real 2013 labels 1-4, room round them
    spacing = (1.0, 1.0, 1.0)
    res = margin(lab, mm, spacing)
    assert res.changed and res.message.startswith(f"grew the border by {mm:g} mm")
    inside = lab > 0
    np.testing.assert_array_equal(res.labels[inside], lab[inside])  # no label overwrites another
    new = (res.labels > 0) & ~inside
    np.testing.assert_array_equal(new, (_distance_mm(inside, spacing) <= mm) & ~inside)
    # Each new voxel took the value of a labelled voxel at its distance: the oedema round the
    # tumour grows as oedema.
    dist, idx = ndimage.distance_transform_edt(~inside, sampling=spacing, return_indices=True)
    z, y, x = np.nonzero(new)
    nearest = lab[idx[0][z, y, x], idx[1][z, y, x], idx[2][z, y, x]]
    np.testing.assert_array_equal(res.labels[z, y, x], nearest)
    assert lab.max() > 1 and (res.labels[new] == 2).mean() > 0.5  # 2013: 2 is oedema, outermost


def test_margin_shrinks_by_mm_and_back(brats2013_labels):
    lab = np.pad(brats2013_labels, 6)
    spacing = (1.0, 1.0, 1.0)
    res = margin(lab, -2.0, spacing)
    inside = lab > 0
    depth = ndimage.distance_transform_edt(inside, sampling=spacing)
    np.testing.assert_array_equal(res.labels > 0, inside & (depth > 2.0))
    kept = res.labels > 0
    np.testing.assert_array_equal(res.labels[kept], lab[kept])
    assert lab[0, 0, 0] == 0 and margin(lab, -2.0, spacing).labels is not lab  # a new array
    # Out again by the same margin: the opening of the mask, close to the original.
    back = margin(res.labels, 2.0, spacing).labels > 0
    dice = 2 * (back & inside).sum() / (back.sum() + inside.sum())
    assert dice > 0.95 and not (back & ~inside).any()


def test_margin_keeps_to_millimetres_across_thick_slices(roi):
    """BRAINIX's ROI has 6 mm slices: 3 mm out grows in-plane, never onto another slice."""
    lab, spacing = roi
    assert spacing[0] == 6.0
    grown = margin(lab, 3.0, spacing).labels
    slices = lambda m: set(np.nonzero(m.any(axis=(1, 2)))[0])  # noqa: E731
    assert slices(grown) == slices(lab)
    assert (grown > 0).sum() > (lab > 0).sum()
    grown7 = margin(lab, 7.0, spacing).labels  # past one slice's distance: the next slices
    assert slices(grown7) > slices(lab)


def test_margin_this_slice_only(roi):
    lab, spacing = roi
    z = int(np.argmax((lab > 0).sum(axis=(1, 2))))
    res = margin(lab, -1.5, spacing, z=z)
    assert res.message.startswith("shrank the border by 1.5 mm (slice")
    changed = np.nonzero((res.labels != lab).any(axis=(1, 2)))[0]
    assert list(changed) == [z]
    with pytest.raises(TumorSegError, match="non-zero"):
        margin(lab, 0.0, spacing)
    assert not margin(np.zeros_like(lab), 2.0, spacing).changed
    small = margin(lab, 0.3, spacing, z=z)
    assert not small.changed and small.message.endswith(f"under the voxel size, {min(spacing[1:]):g} mm)")


def test_margin_of_one_label_thickens_a_thin_enhancing_rim(brats2013_labels):
    """An enhancing rim drawn 1 mm too thin (the fold-2 click model's fault): its label moved
    out by 1 mm over the other labels comes back; without 'over other labels' it cannot grow
    into the oedema round it, and says so."""
    lab = np.pad(brats2013_labels, 6)  # 2013: 1 necrosis, 2 oedema, 3 non-enhancing, 4 enhancing
    spacing = (1.0, 1.0, 1.0)
    et = lab == 4
    assert et.sum() > 1000
    thin = margin(lab, -1.0, spacing, value=4)
    assert thin.message.startswith("shrank label 4 by 1 mm (3D)")
    lost = et & (thin.labels != 4)
    assert lost.any() and (thin.labels[~et] == lab[~et]).all()
    # What the rim lost went to the label beside it (oedema outside, core inside; the
    # background only where the 2013 rater's rim touches it).
    _, idx = ndimage.distance_transform_edt(et, sampling=spacing, return_indices=True)
    z, y, x = np.nonzero(lost)
    np.testing.assert_array_equal(thin.labels[lost], lab[idx[0][z, y, x], idx[1][z, y, x], idx[2][z, y, x]])
    assert (thin.labels[lost] > 0).mean() > 0.8

    kept = margin(thin.labels, 1.0, spacing, value=4)
    assert not kept.changed or (kept.labels[thin.labels > 0] == thin.labels[thin.labels > 0]).all()
    assert "voxels of other labels kept" in kept.message

    back = margin(thin.labels, 1.0, spacing, value=4, overwrite=True)
    new_et = back.labels == 4

    def dice(a):
        return 2 * (a & et).sum() / (a.sum() + et.sum())

    assert dice(new_et) > dice(thin.labels == 4) + 0.1 and dice(new_et) > 0.9
    # Only voxels within 1 mm of the thin rim changed, and only to enhancing.
    near = ndimage.distance_transform_edt(thin.labels != 4, sampling=spacing) <= 1.0
    changed = back.labels != thin.labels
    assert (changed <= near).all() and (back.labels[changed] == 4).all()
    with pytest.raises(TumorSegError, match="positive value"):
        margin(lab, 1.0, spacing, value=0)
    assert not margin(lab, 1.0, spacing, value=7).changed
