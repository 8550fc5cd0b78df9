"""One grid check for the CLI and the docks: same shape is not the same place."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from napari_tumorseg.io.grid import adopt_grid, check_same_grid
from napari_tumorseg.io.readers import read_path
from napari_tumorseg.io.volume import Volume


@pytest.fixture(scope="module")
def case(shared_data):
    folder = shared_data / "brats2012_hg0015"
    (flair,) = read_path(folder / "BRATS_HG0015_FLAIR.nii.gz")
    (truth,) = read_path(folder / "BRATS_HG0015_truth.nii.gz")
    return folder, flair, truth


def test_a_mask_on_its_image_grid_passes(case):
    _, flair, truth = case
    assert check_same_grid(truth, flair) == ""


def test_same_shape_other_origin_is_caught_and_adopting_fixes_it(case, tmp_path):
    folder, flair, truth = case
    src = nib.load(folder / "BRATS_HG0015_truth.nii.gz")
    moved = src.affine.copy()
    moved[:3, 3] += [120.0, 0.0, 0.0]
    nib.save(nib.Nifti1Image(np.asanyarray(src.dataobj), moved), tmp_path / "truth_moved.nii.gz")
    (shifted,) = read_path(tmp_path / "truth_moved.nii.gz")
    assert shifted.spatial_shape == flair.spatial_shape
    reason = check_same_grid(shifted, flair)
    assert "different place" in reason and "120.0 mm" in reason
    fixed = adopt_grid(shifted, flair)
    assert check_same_grid(fixed, flair) == ""
    np.testing.assert_array_equal(fixed.data, shifted.data)  # the voxels do not move


def test_rotation_and_tolerance(case):
    _, flair, _ = case
    turned = Volume(flair.data, flair.spacing, flair.affine.copy(), metadata={"nifti": {}})
    c, s = np.cos(np.radians(5)), np.sin(np.radians(5))
    turned.affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ turned.affine[:3, :3]
    assert "turned 5 degrees" in check_same_grid(turned, flair)
    nudged = Volume(flair.data, flair.spacing, flair.affine.copy(), metadata={"nifti": {}})
    nudged.affine[:3, 3] += 0.2
    assert check_same_grid(nudged, flair) == ""  # within the default 0.5 mm
    assert check_same_grid(nudged, flair, tol_mm=0.1) != ""


def test_shape_and_spacing_reasons(case):
    _, flair, _ = case
    small = Volume(flair.data[:10], flair.spacing, flair.affine, metadata={"nifti": {}})
    assert check_same_grid(small, flair).startswith("different sizes: 10x216x160 vs 176x216x160")
    coarse = Volume(flair.data, (2.0, 1.0, 1.0), metadata={})
    assert "different voxel sizes" in check_same_grid(coarse, flair)


def test_made_up_geometry_is_not_held_against_a_mask(case):
    _, flair, truth = case
    picture = Volume(truth.data, truth.spacing)  # e.g. a plain TIFF mask: no header position
    assert check_same_grid(picture, flair) == ""


def test_evaluate_uses_the_same_check(case, tmp_path):
    from napari_tumorseg.cli.evaluate import evaluate
    from napari_tumorseg.errors import TumorSegError

    folder, _, _ = case
    src = nib.load(folder / "BRATS_HG0015_truth.nii.gz")
    moved = src.affine.copy()
    moved[:3, 3] += [0.0, 0.0, 30.0]
    nib.save(nib.Nifti1Image(np.asanyarray(src.dataobj), moved), tmp_path / "truth_up.nii.gz")
    with pytest.raises(TumorSegError, match="different grids: same size but a different place"):
        evaluate(str(tmp_path / "truth_up.nii.gz"), str(folder / "BRATS_HG0015_truth.nii.gz"))
