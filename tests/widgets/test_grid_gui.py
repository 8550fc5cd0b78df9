"""A mask whose header puts it elsewhere is shown there, said so, and can take the image's grid."""

from __future__ import annotations
from tests.widgets.conftest import add_dock

import nibabel as nib
import numpy as np
import pytest

from napari_tumorseg._reader import napari_get_reader
from napari_tumorseg.io.grid import check_same_grid
from napari_tumorseg.io.readers import read_path

pytestmark = pytest.mark.gui


def _open(viewer, path):
    for data, kwargs, kind in napari_get_reader(str(path))(str(path)):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    return viewer.layers[-1]


@pytest.fixture
def moved_truth(shared_data, tmp_path):
    src = nib.load(shared_data / "brats2012_hg0015" / "BRATS_HG0015_truth.nii.gz")
    affine = src.affine.copy()
    affine[:3, 3] += [0.0, 120.0, 0.0]  # 120 mm anterior, same shape
    path = tmp_path / "truth_moved.nii.gz"
    nib.save(nib.Nifti1Image(np.asanyarray(src.dataobj), affine), path)
    return path


def test_mismatch_is_announced_with_the_fix(make_napari_viewer, qtbot, shared_data, moved_truth, screenshot_dir):
    from napari.utils.notifications import notification_manager

    from napari_tumorseg.widgets.grid import install_grid_watch, layers_grid_reason

    viewer = make_napari_viewer(show=True)
    install_grid_watch(viewer)
    install_grid_watch(viewer)  # idempotent: one warning below, not two
    image = _open(viewer, shared_data / "brats2012_hg0015" / "BRATS_HG0015_FLAIR.nii.gz")
    seen = []
    notification_manager.notification_ready.connect(seen.append)
    truth = _open(viewer, moved_truth)

    # Shown where its header says: 120 mm away from the scan in world coordinates.
    idx = np.argwhere(np.asarray(truth.data) > 0).mean(axis=0)
    shift = np.asarray(truth.data_to_world(idx)) - np.asarray(image.data_to_world(idx))
    assert np.linalg.norm(shift) == pytest.approx(120.0, abs=0.01)
    warnings_ = [n for n in seen if "not its grid" in str(n.message)]
    assert len(warnings_) == 1
    note = warnings_[0]
    assert "120.0 mm" in str(note.message) and note.actions[0][0] == "Use the image's grid"
    viewer.window.screenshot(str(screenshot_dir / "grid_mismatch.png"), flash=False)

    before = np.array(truth.data, copy=True)
    placed = np.asarray(truth.data_to_world(idx))
    note.actions[0][1](None)  # the user clicks "Use the image's grid"
    adopted = viewer.layers[-1]
    assert adopted is not truth and adopted.name == f"{truth.name} (on image grid)"
    assert layers_grid_reason(adopted, image) == ""
    np.testing.assert_allclose(adopted.data_to_world(idx), image.data_to_world(idx), atol=1e-6)
    np.testing.assert_array_equal(adopted.data, before)
    # the original stays as it was (hidden): deleting the new layer undoes the choice
    assert not truth.visible and np.array_equal(truth.data, before)
    np.testing.assert_allclose(truth.data_to_world(idx), placed, atol=1e-6)
    # and the exports now take the image's geometry
    assert adopted.metadata["tumorseg"]["affine"] == image.metadata["tumorseg"]["affine"]
    viewer.window.screenshot(str(screenshot_dir / "grid_adopted.png"), flash=False)


def test_a_mask_on_its_scan_is_silent(make_napari_viewer, shared_data):
    from napari.utils.notifications import notification_manager

    from napari_tumorseg.widgets.grid import install_grid_watch

    viewer = make_napari_viewer()
    install_grid_watch(viewer)
    _open(viewer, shared_data / "brats2012_hg0015" / "BRATS_HG0015_FLAIR.nii.gz")
    seen = []
    notification_manager.notification_ready.connect(seen.append)
    _open(viewer, shared_data / "brats2012_hg0015" / "BRATS_HG0015_truth.nii.gz")
    assert not [n for n in seen if "grid" in str(n.message)]


def test_layer_check_agrees_with_the_cli_check(make_napari_viewer, shared_data, moved_truth):
    from napari_tumorseg.widgets.grid import layers_grid_reason

    viewer = make_napari_viewer()
    flair_path = shared_data / "brats2012_hg0015" / "BRATS_HG0015_FLAIR.nii.gz"
    image = _open(viewer, flair_path)
    truth = _open(viewer, moved_truth)
    (v_image,) = read_path(flair_path)
    (v_truth,) = read_path(moved_truth)
    assert layers_grid_reason(truth, image) == check_same_grid(layer_vol := v_truth, v_image) != ""
    assert layer_vol.kind == "labels"


def test_correct_dock_refuses_dice_across_grids(make_napari_viewer, shared_data, moved_truth):
    """The Correct dock scores a mask against a ground truth only on one grid: the check
    `tumorseg evaluate` makes, not a comparison of array shapes."""
    from napari.utils.notifications import notification_manager


    viewer = make_napari_viewer()
    folder = shared_data / "brats2012_hg0015"
    _open(viewer, folder / "BRATS_HG0015_FLAIR.nii.gz")
    truth = _open(viewer, folder / "BRATS_HG0015_truth.nii.gz")
    moved = _open(viewer, moved_truth)
    widget = add_dock(viewer, "Correct and export")
    widget.labels_combo.setCurrentText(truth.name)
    widget.gt_combo.setCurrentText(moved.name)
    seen = []
    notification_manager.notification_ready.connect(seen.append)
    text = widget.measure()
    assert "Dice" not in text  # no score for a picture nobody sees
    assert any("not on the grid" in str(n.message) and "different place" in str(n.message) for n in seen)
    widget.gt_combo.setCurrentText(truth.name)
    widget.labels_combo.setCurrentText(truth.name)
    same = _open(viewer, folder / "BRATS_HG0015_truth.nii.gz")
    widget.gt_combo.setCurrentText(same.name)
    assert "Dice" in widget.measure()  # the same mask on the same grid is scored
