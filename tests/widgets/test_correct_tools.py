"""Issue 9.6: the correction tools do what they say, on BRAINIX's real ROI."""

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication
from scipy import ndimage

from napari_tumorseg.widgets.correct import apply_edit
from tests.widgets.conftest import add_dock, save_screenshot
from tests.widgets.test_predict_correct_widgets import _open_brainix

pytestmark = pytest.mark.gui


def _enclosed_hole(roi: np.ndarray):
    """A 3×3×3 cube deep inside the ROI: a hole closed in every direction, across 3 slices."""
    inner = ndimage.binary_erosion(roi > 0, structure=np.ones((3, 3, 3)), iterations=2)
    z, y, x = np.argwhere(inner)[len(np.argwhere(inner)) // 2]
    return np.s_[z - 1:z + 2, y - 1:y + 2, x - 1:x + 2], int(z)


def test_fill_holes_in_3d_unless_this_slice_only(make_napari_viewer, shared_data):
    viewer = make_napari_viewer()
    _, roi = _open_brainix(viewer, shared_data)
    widget = add_dock(viewer, "Correct and export")
    widget.labels_combo.setCurrentText(roi.name)
    original = roi.data.copy()
    cube, z = _enclosed_hole(original)
    holed = original.copy()
    holed[cube] = 0
    apply_edit(roi, holed)
    viewer.dims.set_current_step(0, z)

    # "This slice only" unticked: the hole is filled on all three of its slices.
    widget.slice_only.setChecked(False)
    assert widget.fill_holes() == 27
    np.testing.assert_array_equal(roi.data, original)
    roi.undo()
    np.testing.assert_array_equal(roi.data, holed)
    # Ticked: the viewed slice only.
    widget.slice_only.setChecked(True)
    assert widget.fill_holes() == 9
    assert roi.data[z][cube[1:]].all()
    assert not roi.data[z - 1][cube[1:]].any() and not roi.data[z + 1][cube[1:]].any()


def test_move_border_grows_and_shrinks_in_mm_as_one_step(make_napari_viewer, shared_data):
    """A border drawn too tight all round: "Move border by" 3 mm grows it (BRAINIX's 6 mm
    slices: in-plane only), one undo step; -3 mm in the viewed slice alone."""
    viewer = make_napari_viewer()
    _, roi = _open_brainix(viewer, shared_data)
    widget = add_dock(viewer, "Correct and export")
    widget.labels_combo.setCurrentText(roi.name)
    # The spin box steps by the in-plane voxel size (BRAINIX's FLAIR grid), not a fixed 0.5 mm.
    assert widget.margin_mm.singleStep() == pytest.approx(round(min(roi.scale[1:]), 1)) != 0.5
    original = roi.data.copy()
    widget.slice_only.setChecked(False)
    widget.margin_mm.setValue(3.0)
    grown = widget.move_border()
    assert grown > 0 and (roi.data > 0).sum() == (original > 0).sum() + grown
    # The user's own edit: the session's ledger holds its voxels, so nothing derived rewrites them.
    from napari_tumorseg.widgets._session import session_for

    edited = session_for(viewer).edited_mask(roi)
    assert edited is not None and edited[roi.data != original].all()
    np.testing.assert_array_equal(roi.data[original > 0], original[original > 0])
    assert set(np.nonzero(roi.data.any(axis=(1, 2)))[0]) == set(np.nonzero(original.any(axis=(1, 2)))[0])
    roi.undo()
    np.testing.assert_array_equal(roi.data, original)
    z = int(np.argmax((original > 0).sum(axis=(1, 2))))
    viewer.dims.set_current_step(0, z)
    widget.slice_only.setChecked(True)
    widget.margin_mm.setValue(-3.0)
    assert widget.move_border() > 0
    assert list(np.nonzero((roi.data != original).any(axis=(1, 2)))[0]) == [z]
    assert (roi.data[z] > 0).sum() < (original[z] > 0).sum()
    roi.undo()
    np.testing.assert_array_equal(roi.data, original)


def test_move_border_of_one_label_over_the_others(make_napari_viewer, shared_data):
    """A predicted region map whose enhancing rim (3) is too thin: label 3 moved out by 1 mm
    grows into the core and oedema only with 'over other labels' ticked."""
    from napari_tumorseg.brats import REGION_LABEL_NAMES
    from napari_tumorseg.io.readers import read_path

    (seg,) = read_path(shared_data / "brats_multi_year" / "BraTS2021_00006" / "BraTS2021_00006_seg.nii.gz")
    truth = np.asarray(seg.data)  # 2021: 1 necrosis, 2 oedema, 4 enhancing
    regions = np.select([truth == 4, truth == 1, truth == 2], [3, 2, 1], 0).astype(np.uint8)
    viewer = make_napari_viewer()
    layer = viewer.add_labels(regions.copy(), name="prediction", metadata={"label_names": REGION_LABEL_NAMES})
    widget = add_dock(viewer, "Correct and export")
    widget.labels_combo.setCurrentText(layer.name)
    assert widget.margin_label.text() == "all labels"
    widget.slice_only.setChecked(False)
    widget.margin_label.setValue(3)
    widget.margin_mm.setValue(1.0)
    widget.margin_over.setChecked(False)
    # The rim lies inside the core and oedema: alone it takes the few background voxels it touches.
    alone = widget.move_border()
    assert alone < 1000 and (regions[np.asarray(layer.data) != regions] == 0).all()
    layer.undo()
    np.testing.assert_array_equal(layer.data, regions)
    widget.margin_over.setChecked(True)
    grown = widget.move_border()
    assert grown > 10 * alone
    changed = np.asarray(layer.data) != regions
    assert (np.asarray(layer.data)[changed] == 3).all() and (regions[changed] > 0).mean() > 0.9
    layer.undo()
    np.testing.assert_array_equal(layer.data, regions)


def test_click_removes_a_false_positive_in_one_step(make_napari_viewer, qtbot, shared_data, screenshot_dir):
    viewer = make_napari_viewer(show=True)
    flair, roi = _open_brainix(viewer, shared_data)
    widget = add_dock(viewer, "Correct and export")
    widget.labels_combo.setCurrentText(roi.name)
    original = roi.data.copy()
    z = int(np.argmax(original.sum(axis=(1, 2))))
    # A false positive: a blob far from the tumour, on two slices.
    fp = original.copy()
    fp[z:z + 2, 20:26, 20:26] = 1
    apply_edit(roi, fp)

    # The user ticks "click-to-remove" and clicks the blob: napari calls the layer's mouse callback.
    widget.click_remove.setChecked(True)
    assert not widget.click_keep.isChecked() and widget._on_click in roi.mouse_drag_callbacks
    world = roi.data_to_world((z, 22, 22))
    event = type("Click", (), {"type": "mouse_press", "position": tuple(world)})()
    for callback in list(roi.mouse_drag_callbacks):
        callback(roi, event)
    np.testing.assert_array_equal(roi.data, original)  # the blob is gone, the tumour intact
    roi.undo()  # one step brings it back
    np.testing.assert_array_equal(roi.data, fp)
    roi.undo()
    np.testing.assert_array_equal(roi.data, original)
    widget.click_remove.setChecked(False)
    assert widget._on_click not in roi.mouse_drag_callbacks

    # Measurements: a compact table, volume / diameter / Dice first, copyable as a table.
    gt = viewer.add_labels(original.copy(), name="truth", scale=roi.scale, translate=roi.translate,
                           affine=roi.affine.affine_matrix, metadata=dict(roi.metadata))
    widget._refresh_layers()
    widget.gt_combo.setCurrentText(gt.name)
    widget.measure()
    first = [widget.table.item(r, 0).text() for r in range(3)]
    assert first == ["Volume", "Largest axial diameter", "Dice"]
    assert widget.table.item(2, 1).text() == "1.000"
    voxel_ml = float(np.prod(roi.scale)) / 1000.0
    assert widget.table.item(0, 1).text() == f"{np.count_nonzero(original) * voxel_ml:.2f} mL"
    text = widget.table_text()
    assert text.splitlines()[0].startswith("Volume\t") and len(text.splitlines()) == widget.table.rowCount()
    QApplication.clipboard().setText("")
    widget.table.setFocus()
    qtbot.keyClick(widget.table, Qt.Key_C, Qt.ControlModifier)
    assert QApplication.clipboard().text() == text  # Ctrl+C copies the whole table

    # The largest axial diameter is drawn as a line on its slice, as long as the table says.
    line_layer = widget.diameter_layer
    # (the longest diameter first, then its perpendicular, per lesion)
    assert type(line_layer).__name__ == "Shapes" and line_layer.shape_type == ["line"] * len(line_layer.data)
    a, b = np.asarray(line_layer.data[0])
    assert round(float(roi.world_to_data(viewer.dims.point)[0])) == widget.last_measure["diameter_slice"]
    roi.visible = flair.visible = gt.visible = False
    canvas = np.asarray(viewer.screenshot(canvas_only=True, flash=False))[..., :3].astype(int)
    r, g, b_ = canvas[..., 0], canvas[..., 1], canvas[..., 2]
    yellow = (r > 120) & (np.abs(r - g) < 30) & (b_ < 60)  # the line (yellow at the layer's opacity)
    assert yellow[40:-40, 40:-40].sum() > 20  # the line is on the slice shown (not the letters)
    # Its ends are in world mm on the screen plane (BRAINIX is tilted a few degrees, which
    # shortens the drawn line by well under 1 %).
    length = float(np.linalg.norm(a - b))
    diameter = float(widget.table.item(1, 1).text().split()[0])
    assert abs(length - diameter) < 0.01 * diameter + 0.06, (length, diameter)
    # ... and on its slice only.
    here = viewer.dims.current_step[0]
    viewer.dims.set_current_step(0, here + 1)
    assert not line_layer.shown.any()
    # ... not drawn there either (napari draws 2D shapes on every slice unless told not to).
    canvas = np.asarray(viewer.screenshot(canvas_only=True, flash=False))[..., :3].astype(int)
    r, g, b_ = canvas[..., 0], canvas[..., 1], canvas[..., 2]
    inner = np.s_[40:-40, 40:-40]  # off the orientation letters, which are yellow too
    assert ((r > 120) & (np.abs(r - g) < 30) & (b_ < 60))[inner].sum() == 0
    viewer.dims.set_current_step(0, here)
    assert line_layer.shown.all()
    roi.visible = flair.visible = True
    save_screenshot(viewer, screenshot_dir / "correct_table_diameter.png")


def test_an_opened_reference_mask_is_offered_as_ground_truth_until_the_user_picks(make_napari_viewer, shared_data):
    viewer = make_napari_viewer()
    flair, roi = _open_brainix(viewer, shared_data)
    edit = viewer.add_labels(np.zeros(roi.data.shape, np.uint8), name="my edit", scale=roi.scale,
                             translate=roi.translate)
    widget = add_dock(viewer, "Correct and export")
    widget.labels_combo.setCurrentText(edit.name)
    # The reader marked the ROI a reference: the dock measures against it without being asked.
    widget._refresh_layers()
    assert widget.gt_combo.currentText() == roi.name
    assert not (isinstance(edit.metadata.get("tumorseg"), dict) and edit.metadata["tumorseg"].get("reference"))
    # The user picks "(none)": a reference opened later does not take the choice back.
    widget.gt_combo.setCurrentText("(none)")
    widget.gt_combo.activated.emit(widget.gt_combo.currentIndex())
    viewer.open(str(shared_data / "dicom_brainix" / "ROI"), plugin="napari-tumorseg")
    assert sum(type(l).__name__ == "Labels" for l in viewer.layers) == 3
    assert widget.gt_combo.currentText() == "(none)"
