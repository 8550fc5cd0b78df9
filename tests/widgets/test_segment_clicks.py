"""Segment by clicks on real BRAINIX FLAIR: real mouse clicks on the napari canvas."""

import threading
import time

import numpy as np
import pytest
from qtpy.QtCore import QEvent, QPoint, QPointF, Qt
from qtpy.QtGui import QMouseEvent
from qtpy.QtWidgets import QApplication
from scipy import ndimage

from napari_tumorseg.widgets.segment_clicks import CLASSIC, NEW_LAYER, SegmentClicksWidget
from tests.widgets.conftest import add_dock, save_screenshot
from tests.widgets.test_predict_correct_widgets import _open_brainix

pytestmark = pytest.mark.gui

# One positive click at the lesion's deepest voxel gives Dice 0.79 with the classic engine
# (measured: tests print it); the threshold leaves room for the sub-voxel error of a click.
DICE_ONE_CLICK = 0.70


def _dice(a, b) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


def _dock(viewer, qtbot, flair, engine=CLASSIC):
    dock = add_dock(viewer, "Segment by clicks")
    dock.scan_combo.setCurrentText(flair.name)
    if engine is not None:
        dock.engine_combo.setCurrentText(engine)
    qtbot.waitUntil(lambda: dock._auto_worker is None, timeout=60000)
    return dock


def _show_slice(viewer, layer, z: int) -> None:
    """Move the viewer to the step that shows data slice ``z`` (BRAINIX is oblique)."""
    best = None
    for k in range(viewer.dims.nsteps[0]):
        viewer.dims.set_current_step(0, k)
        err = abs(float(layer._data_slice.point[0]) - z)
        if best is None or err < best[0]:
            best = (err, k)
    viewer.dims.set_current_step(0, best[1])
    assert int(np.round(layer._data_slice.point[0])) == z


def _canvas_pos(viewer, layer, point) -> QPoint:
    """Canvas pixel of data voxel ``point`` of ``layer`` (data -> world -> canvas), as drawn."""
    canvas = viewer.window._qt_viewer.canvas
    displayed = list(viewer.dims.displayed)  # (row axis, column axis)
    world = layer._data_to_world.set_slice(displayed)(np.asarray(point, float)[displayed])
    transform = canvas.view.transform * canvas.view.scene.transform
    x, y = transform.map([world[1], world[0], 0, 1])[:2]
    return QPoint(int(round(x)), int(round(y)))


def _click(viewer, qtbot, dock, layer, point, modifier=Qt.NoModifier):
    """A real mouse click on the canvas at a voxel of ``layer``; waits for the re-segmentation."""
    _show_slice(viewer, layer, int(point[0]))
    n = 0 if dock.prompt_layers.clicks is None else len(dock.prompt_layers.clicks.data)
    qtbot.mouseClick(viewer.window._qt_viewer.canvas.native, Qt.LeftButton, modifier,
                     _canvas_pos(viewer, layer, point))
    qtbot.waitUntil(lambda: dock.prompt_layers.clicks is not None and len(dock.prompt_layers.clicks.data) == n + 1, timeout=5000)
    qtbot.waitUntil(lambda: not dock.busy, timeout=60000)
    landed = dock.prompt_layers.clicks.data[-1]
    # The click landed where we aimed: on the slice shown, within a voxel in-plane.
    assert landed[0] == point[0]
    np.testing.assert_allclose(landed[1:], point[1:], atol=1.0)
    return bool(dock.prompt_layers.clicks.features["positive"].iloc[-1])


def _drag(viewer, qtbot, layer, p0, p1, modifier=Qt.NoModifier, steps=8):
    """A real press-move-release on the canvas from voxel p0 to voxel p1 (same slice)."""
    _show_slice(viewer, layer, int(p0[0]))
    native = viewer.window._qt_viewer.canvas.native
    a, b = _canvas_pos(viewer, layer, p0), _canvas_pos(viewer, layer, p1)
    qtbot.mousePress(native, Qt.LeftButton, modifier, a)
    for t in np.linspace(0, 1, steps)[1:]:
        pos = QPointF(a.x() + t * (b.x() - a.x()), a.y() + t * (b.y() - a.y()))
        QApplication.sendEvent(native, QMouseEvent(QEvent.MouseMove, pos, Qt.NoButton, Qt.LeftButton, modifier))
        qtbot.wait(30)
    qtbot.mouseRelease(native, Qt.LeftButton, modifier, b)
    qtbot.waitUntil(lambda: not dock_busy(viewer), timeout=60000)


def dock_busy(viewer) -> bool:
    docks = [w for w in viewer.window._qt_window.findChildren(SegmentClicksWidget)]
    return any(d.busy for d in docks)


def _lesion_point(gt):
    z = int(np.argmax(gt.sum(axis=(1, 2))))
    depth = ndimage.distance_transform_edt(gt[z])
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return z, (z, int(y), int(x))


def test_clicks_on_the_canvas_segment_brainix(make_napari_viewer, qtbot, shared_data, screenshot_dir):
    viewer = make_napari_viewer(show=True)
    flair, roi = _open_brainix(viewer, shared_data)
    gt = np.asarray(roi.data) > 0
    dock = _dock(viewer, qtbot, flair)
    assert "no model" in dock.engine_status.text()
    viewer.window._qt_window.resize(1366, 768)
    viewer.reset_view()
    z, point = _lesion_point(gt)

    # One positive click, no model: a 3D mask that overlaps the ROI series.
    assert _click(viewer, qtbot, dock, flair, point) is True
    mask = dock.preview_mask.copy()
    dice = _dice(mask, gt)
    print(f"\nBRAINIX FLAIR, classic engine, one click: Dice {dice:.3f} "
          f"({int(mask.sum())} voxels, ROI {int(gt.sum())}); {dock.last_seconds:.2f} s")
    assert dice > DICE_ONE_CLICK
    assert mask[:z].any() or mask[z + 1:].any(), "the mask must be 3D, not one slice"
    np.testing.assert_array_equal(np.asarray(dock.preview_layer.data) > 0, mask)
    assert "voxels" in dock.result_label.text() and "mL" in dock.result_label.text()
    assert "s ·" in dock.result_label.text()

    # A Ctrl+click where the mask is: a negative prompt that shrinks the mask.
    dist = ndimage.distance_transform_edt(mask[z])
    candidates = np.argwhere(mask[z] & ~gt[z]) if (mask[z] & ~gt[z]).any() else np.argwhere(dist >= 2)
    far = candidates[np.argmax(np.hypot(*(candidates - np.asarray(point[1:])).T))]
    neg = (z, int(far[0]), int(far[1]))
    assert _click(viewer, qtbot, dock, flair, neg, Qt.ControlModifier) is False
    shrunk = dock.preview_mask
    print(f"after a negative click: {int(shrunk.sum())} voxels (was {int(mask.sum())}), "
          f"Dice {_dice(shrunk, gt):.3f}")
    assert shrunk.sum() < mask.sum()
    assert not shrunk[neg]
    assert shrunk[point]

    _show_slice(viewer, flair, z)
    img = save_screenshot(viewer, screenshot_dir / "segment_clicks.png")
    from skimage.io import imsave

    imsave("/tmp/segment_clicks.png", img, check_contrast=False)

    # Ctrl+Z takes the negative click back (a click makes the clicks layer the active one).
    assert viewer.layers.selection.active is dock.prompt_layers.clicks
    qtbot.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key_Z, Qt.ControlModifier)
    qtbot.waitUntil(lambda: len(dock.prompt_layers.clicks.data) == 1, timeout=5000)
    qtbot.waitUntil(lambda: not dock.busy, timeout=60000)
    np.testing.assert_array_equal(dock.preview_mask, mask)

    # Accept into a new labels layer on the scan's grid: one undo step restores it exactly.
    assert dock.target_combo.currentText() == NEW_LAYER
    target = dock.accept()
    assert target is not None and target.data.shape == flair.data.shape
    np.testing.assert_allclose(target.scale, flair.scale)
    np.testing.assert_allclose(target.translate, flair.translate)
    np.testing.assert_array_equal(target.data == 1, mask)
    assert dock.preview_mask is None and len(dock.prompt_layers.clicks.data) == 0  # ready for the next lesion
    target.undo()
    assert not np.asarray(target.data).any()
    target.redo()
    np.testing.assert_array_equal(target.data == 1, mask)


def test_accept_keeps_other_values_and_ctrl_z_restores(make_napari_viewer, qtbot, shared_data):
    """Several values in one layer: Accept writes only the preview's voxels, as one undo step."""
    viewer = make_napari_viewer(show=True)
    flair, roi = _open_brainix(viewer, shared_data)
    gt = np.asarray(roi.data) > 0
    other = np.zeros(flair.data.shape, np.uint8)
    other[2, 10:20, 10:20] = 3  # another lesion, value 3, far from this one
    other[gt] = 2  # and an older value under the lesion: kept unless "Overwrite other labels"
    target = viewer.add_labels(other.copy(), name="lesions", scale=flair.scale, translate=flair.translate,
                               affine=flair.affine.affine_matrix, metadata={
                                   **flair.metadata, "label_names": {1: "oedema", 2: "core", 3: "enhancing"}})
    dock = _dock(viewer, qtbot, flair)
    dock.target_combo.setCurrentText("lesions")
    dock.value_spin.setValue(1)
    assert dock.value_name.text() == "oedema"
    viewer.reset_view()
    _, point = _lesion_point(gt)
    _click(viewer, qtbot, dock, flair, point)
    mask = dock.preview_mask.copy()
    before = np.asarray(target.data).copy()
    assert (mask & (before == 0)).any() and (mask & (before == 2)).any()
    dock.accept()
    after = np.asarray(target.data)
    np.testing.assert_array_equal(after[mask & (before == 0)], 1)
    np.testing.assert_array_equal(after[before == 2], 2)  # another label's voxels are not the preview's
    np.testing.assert_array_equal(after[~mask], before[~mask])
    assert (after == 3).sum() == 100

    # Ctrl+Z on the canvas (Accept made the target active): one key press undoes the whole Accept.
    assert viewer.layers.selection.active is target
    qtbot.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key_Z, Qt.ControlModifier)
    np.testing.assert_array_equal(np.asarray(target.data), before)

    # Asked to: the preview replaces the other label under it, still one undo step.
    _click(viewer, qtbot, dock, flair, point)
    dock.overwrite_other.setChecked(True)
    mask = dock.preview_mask.copy()
    dock.accept()
    np.testing.assert_array_equal(np.asarray(target.data)[mask], 1)
    qtbot.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key_Z, Qt.ControlModifier)
    np.testing.assert_array_equal(np.asarray(target.data), before)


class SlowEngine:
    """A protocol engine that takes its time and polls ``cancel``: a ball around the last click."""

    name = "slow test engine"

    def __init__(self, seconds=1.5):
        self.seconds = seconds
        self.calls, self.cancelled, self.finished = [], 0, 0
        self.lock = threading.Lock()

    def segment(self, image, spacing, prompts, prior=None, cancel=None):
        with self.lock:
            self.calls.append(len(prompts.positive))
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < self.seconds:
            if cancel is not None and cancel():
                with self.lock:
                    self.cancelled += 1
                raise RuntimeError("superseded")
            time.sleep(0.01)
        shape = image.shape[-3:]
        zz, yy, xx = np.indices(shape)
        z, y, x = np.round(prompts.positive[-1]).astype(int)
        with self.lock:
            self.finished += 1
        return (zz == z) & ((yy - y) ** 2 + (xx - x) ** 2 <= 25)


def test_a_newer_prompt_supersedes_the_running_one(make_napari_viewer, qtbot, shared_data):
    viewer = make_napari_viewer(show=True)
    flair, roi = _open_brainix(viewer, shared_data)
    dock = _dock(viewer, qtbot, flair)
    engine = SlowEngine()
    label = dock.set_engine(engine)
    assert dock.engine_combo.currentText() == label
    assert dock.engine_status.text().startswith("slow test engine")
    landed = []
    dock.preview_updated.connect(lambda: landed.append(None if dock.preview_mask is None
                                                       else dock.preview_mask.copy()))
    dock.add_click((9, 100, 100))
    qtbot.waitUntil(lambda: len(engine.calls) == 1, timeout=5000)  # the first job is running
    dock.add_click((9, 150, 180))  # a newer prompt while it runs
    qtbot.waitUntil(lambda: not dock.busy, timeout=30000)
    assert engine.cancelled == 1 and engine.finished == 1
    assert engine.calls == [1, 2]
    assert len(landed) == 1, "only the latest result may land"
    # The engine's disk is around the newest click; the first click is in the answer only by
    # the never-worse rule's small seed ball (smaller than the engine's 81-pixel disk).
    assert landed[0][9, 150, 180] and landed[0][9, 145:156, 175:186].sum() == 81
    assert landed[0][9, 100, 100] and landed[0][9, 95:106, 95:106].sum() < 81
    assert dock.session.click_engine is engine


def test_box_and_scribbles_drawn_on_the_canvas(make_napari_viewer, qtbot, shared_data):
    """Box and scribble prompts drawn with real drags land on the slice shown and re-segment."""
    viewer = make_napari_viewer(show=True)
    flair, roi = _open_brainix(viewer, shared_data)
    gt = np.asarray(roi.data) > 0
    dock = _dock(viewer, qtbot, flair)
    viewer.reset_view()
    z, point = _lesion_point(gt)
    ys, xs = np.nonzero(gt[z])

    # A plain drag pans; it is no click.
    _drag(viewer, qtbot, flair, point, (z, point[1] + 20, point[2] + 20))
    assert dock.prompt_layers.clicks is None or len(dock.prompt_layers.clicks.data) == 0
    viewer.reset_view()

    # Box: a drag around the lesion on its largest slice.
    dock.start_box()
    assert not viewer.camera.mouse_pan  # drags draw while a drawing mode is on
    c0, c1 = (z, ys.min() - 3, xs.min() - 3), (z, ys.max() + 3, xs.max() + 3)
    _drag(viewer, qtbot, flair, c0, c1)
    box = dock.prompts().box
    assert box[0] == z
    np.testing.assert_allclose(box[1:], (*c0[1:], *c1[1:]), atol=1.0)
    boxed = dock.preview_mask.copy()
    print(f"\nbox prompt: Dice {_dice(boxed, gt):.3f}, {dock.last_seconds:.2f} s")
    assert _dice(boxed, gt) > 0.5
    dock.undo_prompt()
    qtbot.waitUntil(lambda: not dock.busy, timeout=60000)
    assert dock.prompts().box is None and dock.preview_mask is None

    # Scribble: one stroke through the lesion, one undo step on the scribble layer.
    dock.start_scribbles()
    assert not dock.box_button.isChecked()
    row = int(np.median(ys))
    cols = xs[ys == row]
    s0, s1 = (z, row, int(cols.min()) + 3), (z, row, int(cols.max()) - 3)
    _drag(viewer, qtbot, flair, s0, s1)
    scr = np.asarray(dock.prompt_layers.scribbles.data)
    assert set(np.unique(scr)) == {0, 1}
    assert scr[z].any() and not np.delete(scr, z, axis=0).any(), "the stroke is on the slice shown"
    assert scr[z, row, (s0[2] + s1[2]) // 2] == 1
    scribbled = dock.preview_mask.copy()
    print(f"scribble prompt: Dice {_dice(scribbled, gt):.3f}, {dock.last_seconds:.2f} s")
    assert _dice(scribbled, gt) > 0.5
    # Ctrl+drag paints 'not tumour' (2) on the stroke.
    out = (z, int(ys.min()) - 8, int(xs.min()) - 8)
    _drag(viewer, qtbot, flair, out, (z, out[1], out[2] + 6), Qt.ControlModifier)
    assert (np.asarray(dock.prompt_layers.scribbles.data) == 2).any()
    dock.undo_prompt()
    qtbot.waitUntil(lambda: not dock.busy, timeout=60000)
    assert not (np.asarray(dock.prompt_layers.scribbles.data) == 2).any()
    np.testing.assert_array_equal(np.asarray(dock.prompt_layers.scribbles.data), scr)
    dock.clear()
    assert dock.preview_mask is None and not np.asarray(dock.prompt_layers.scribbles.data).any()
    dock.scribble_button.setChecked(False)
    assert viewer.camera.mouse_pan


def test_accept_with_nothing_is_one_message(make_napari_viewer, qtbot, shared_data, monkeypatch):
    viewer = make_napari_viewer(show=True)
    flair, _ = _open_brainix(viewer, shared_data)
    dock = _dock(viewer, qtbot, flair)
    errors = []
    monkeypatch.setattr("napari_tumorseg.widgets._common.show_error", errors.append)
    assert dock.accept() is None
    assert errors == ["nothing to accept: click on the tumour first"]
    assert len(viewer.layers) == 2  # no empty target layer was made


def test_clicks_refine_a_prediction(make_napari_viewer, qtbot, shared_data):
    """On a prediction, a click where it missed adds the region; Ctrl+click on a false positive
    removes that component; the rest stays, and Accept replaces the labels as one undo step."""
    from napari_tumorseg.widgets._session import Prediction, session_for

    viewer = make_napari_viewer(show=True)
    flair, roi = _open_brainix(viewer, shared_data)
    gt = np.asarray(roi.data) > 0
    z, point = _lesion_point(gt)
    # A "prediction" that missed the lesion's lower half and has a false positive in the
    # other hemisphere (a ball of normal tissue).
    predicted = np.zeros(gt.shape, np.uint8)
    predicted[: z - 1][gt[: z - 1]] = 1
    zz, yy, xx = np.indices(gt.shape)
    fp_centre = (z, point[1], flair.data.shape[2] - point[2])
    blob = (np.abs(zz - z) <= 1) & ((yy - fp_centre[1]) ** 2 + (xx - fp_centre[2]) ** 2 <= 36)
    assert not (blob & gt).any()
    predicted[blob] = 1
    labels = viewer.add_labels(predicted.copy(), name="sT2W/FLAIR tumour", scale=flair.scale,
                               translate=flair.translate, affine=flair.affine.affine_matrix,
                               metadata=dict(flair.metadata))
    dock = _dock(viewer, qtbot, flair)
    session = session_for(viewer)
    session.set_prediction(Prediction(source=flair, predictor=None,
                                      probabilities=np.zeros(gt.shape, np.float32), labels_layer=labels))
    assert dock.target_combo.currentText() == labels.name
    assert "refining the prediction" in dock.engine_status.text()
    viewer.reset_view()

    prior = predicted > 0
    _click(viewer, qtbot, dock, flair, point)
    added = dock.preview_mask.copy()
    assert (added & prior).sum() == prior.sum(), "the prediction stays"
    assert added[point] and (added & gt & ~prior).sum() > 0.5 * (gt & ~prior).sum()

    _click(viewer, qtbot, dock, flair, fp_centre, Qt.ControlModifier)
    removed = dock.preview_mask.copy()
    assert not (removed & blob).any(), "the false positive goes whole"
    np.testing.assert_array_equal(removed & ~blob, added & ~blob)
    print(f"\nrefined prediction: Dice {_dice(prior, gt):.3f} -> {_dice(removed, gt):.3f}")

    before = np.asarray(labels.data).copy()
    assert dock.accept() is labels
    np.testing.assert_array_equal(np.asarray(labels.data) > 0, removed)
    labels.undo()
    np.testing.assert_array_equal(np.asarray(labels.data), before)


def _click_checkpoint(path, interactive=True):
    """A small click-guided U-Net checkpoint as `tumorseg train --interactive` writes it (untrained)."""
    import torch

    from napari_tumorseg.models import create_model, get_info
    from napari_tumorseg.models.checkpoint import save_checkpoint
    from napari_tumorseg.training.preprocessing import default_preprocessing

    torch.manual_seed(0)
    config = dict(get_info("unet").tiny_config)
    if interactive:
        config["interactive"] = {"kind": "disk", "radius_mm": 5.0, "min_radius_px": 2.0, "with_prev_mask": True}
    model = create_model("unet", in_channels=1, **config)
    prep = default_preprocessing(2, [64, 64], 1, "binary")
    return save_checkpoint(path, model.eval(), model_name="unet", config=config, in_channels=1, out_channels=1,
                           preprocessing=prep, class_names=["background", "tumour"], history=[])


def test_a_loaded_click_checkpoint_answers_the_clicks(make_napari_viewer, qtbot, shared_data, tmp_path,
                                                      monkeypatch):
    from napari_tumorseg.interactive.learned import LearnedEngine

    viewer = make_napari_viewer(show=True)
    flair, roi = _open_brainix(viewer, shared_data)
    dock = _dock(viewer, qtbot, flair)
    errors = []
    monkeypatch.setattr("napari_tumorseg.widgets._common.show_error", errors.append)

    # An automatic (non-click) checkpoint is refused in one line; the engine stays.
    worker = dock.load_checkpoint(_click_checkpoint(tmp_path / "auto.pt", interactive=False))
    qtbot.waitUntil(lambda: len(errors) > 0, timeout=60000)
    qtbot.waitUntil(lambda: worker.is_running is False, timeout=5000)
    assert len(errors) == 1 and "not a click-guided checkpoint" in errors[0]
    assert dock.engine_combo.currentText() == CLASSIC

    with qtbot.waitSignal(dock.engine_ready, timeout=60000):
        worker = dock.load_checkpoint(_click_checkpoint(tmp_path / "click.pt"))
    assert worker is not None
    assert dock.engine_combo.currentText() == "learned: unet (click.pt)"
    assert dock.engine_status.text() == "learned: unet (2D+propagation)"
    _, point = _lesion_point(np.asarray(roi.data) > 0)
    dock.add_click(point)
    qtbot.waitUntil(lambda: not dock.busy, timeout=120000)
    assert isinstance(dock.session.click_engine, LearnedEngine)
    assert dock.preview_mask is not None and dock.preview_mask.shape == flair.data.shape
    assert errors == [errors[0]]


class _Spy:
    """The classic engine, recording what the dock hands it."""

    def __init__(self):
        from napari_tumorseg.interactive.classic import ClassicEngine

        self.inner, self.name, self.images = ClassicEngine(), "classic (spy)", []

    def segment(self, image, spacing, prompts, prior=None, cancel=None):
        self.images.append((image.shape, tuple(spacing)))
        return self.inner.segment(image, spacing, prompts, prior=prior, cancel=cancel)


def test_a_multichannel_case_segments_on_all_its_channels(make_napari_viewer, qtbot, shared_data):
    """FLAIR + T1c opened as one case: the engine sees both channels, wherever the user clicks."""
    from napari_tumorseg.io.readers import read_path
    from tests.widgets.test_session import _load_case

    viewer = make_napari_viewer(show=True)
    case = shared_data / "brats2013_deepmedic" / "validation" / "brats_2013_pat0003_1"
    _load_case(viewer, qtbot, case, ("flair", "t1c"), as_channels=True)
    images = [l for l in viewer.layers if type(l).__name__ == "Image"]
    assert len(images) == 2
    dock = _dock(viewer, qtbot, images[1])  # the T1c layer: still the whole case
    spy = _Spy()
    dock.set_engine(spy)
    truth = read_path(case / "OTMultiClass.nii.gz")[0].data > 0
    _, point = _lesion_point(truth)
    dock.add_click(point)
    qtbot.waitUntil(lambda: not dock.busy, timeout=60000)
    assert spy.images[-1][0] == (2, *truth.shape)
    print(f"\nBraTS 2013 pat0003, FLAIR+T1c, one click: Dice {_dice(dock.preview_mask, truth):.3f} "
          f"in {dock.last_seconds:.2f} s")
    assert (dock.preview_mask & truth).sum() > 0.5 * dock.preview_mask.sum()  # mostly tumour


def test_a_2d_image_is_one_slice(make_napari_viewer, qtbot, shared_data):
    """A 2D layer: clicks are (y, x), the preview and the new labels layer are 2D."""
    viewer = make_napari_viewer(show=True)
    name = "y500_jpg.rf.522229bbfea1ab9cdc96ec0d2d94a265.jpg"
    viewer.open(str(shared_data / "coco_ravirawal" / "valid" / name), plugin="napari-tumorseg")
    picture = np.asarray(viewer.layers[0].data)[0]
    viewer.layers.clear()
    image = viewer.add_image(picture, name="slice")
    dock = _dock(viewer, qtbot, image)
    h, w = picture.shape
    dock.add_click((h // 2, w // 2))
    qtbot.waitUntil(lambda: not dock.busy, timeout=60000)
    assert dock.prompt_layers.clicks.data.shape == (1, 2)
    assert dock.preview_mask.shape == (1, h, w) and dock.preview_mask[0, h // 2, w // 2]
    assert dock.preview_layer.data.shape == (h, w)
    target = dock.accept()
    assert target.data.shape == (h, w) and target.data[h // 2, w // 2] == 1
    target.undo()
    assert not np.asarray(target.data).any()


def test_automatic_engine_is_the_default_choice_and_says_which(make_napari_viewer, qtbot, shared_data):
    """'automatic' is interactive.engines.default_engine(): the status line names what it chose."""
    from napari_tumorseg.interactive.engines import default_engine
    from napari_tumorseg.widgets.segment_clicks import AUTO, describe_engine

    viewer = make_napari_viewer(show=True)
    flair, roi = _open_brainix(viewer, shared_data)
    dock = _dock(viewer, qtbot, flair, engine=None)
    assert dock.engine_combo.currentText() == AUTO
    expected = default_engine(volume=True)  # BRAINIX is a volume
    status, tip = dock.engine_status.text(), dock.engine_status.toolTip()
    # One line says who answers this scan; the chain and why it was chosen are in the tooltip.
    assert status.startswith("automatic · this scan: ") and "\n" not in status, status
    assert tip.startswith(f"automatic → {describe_engine(expected.engine)}") and expected.reason in tip
    assert type(dock.engine()[0]) is type(expected.engine)
    _, point = _lesion_point(np.asarray(roi.data) > 0)
    dock.add_click(point)
    qtbot.waitUntil(lambda: not dock.busy, timeout=120000)
    assert dock.session.click_engine is dock.engine()[0]
    assert dock.preview_mask is not None and dock.preview_mask.shape == flair.data.shape
    print(f"\nautomatic engine on BRAINIX, one click: {status.splitlines()[0]}; "
          f"Dice {_dice(dock.preview_mask, np.asarray(roi.data) > 0):.3f} in {dock.last_seconds:.2f} s")


def test_the_dock_and_the_robot_give_the_same_mask(make_napari_viewer, qtbot, shared_data):
    """One code path: the robot's clicks, given to the dock one by one, give the dock the very
    masks the robot measured (engine, cache and folding included)."""
    from napari_tumorseg.interactive.classic import ClassicEngine
    from napari_tumorseg.interactive.robot import RobotProgress, iter_clicks
    from napari_tumorseg.widgets._session import session_for

    viewer = make_napari_viewer()
    flair, roi = _open_brainix(viewer, shared_data)
    dock = _dock(viewer, qtbot, flair)
    vol = session_for(viewer).volume_of(flair)
    gt = np.asarray(roi.data) > 0
    steps = [p for p in iter_clicks(ClassicEngine(), np.asarray(vol.data)[None], vol.spacing, gt, max_clicks=4)
             if isinstance(p, RobotProgress)]
    assert len(steps) >= 2
    for step in steps:
        dock.add_click(step.point, step.positive)
        qtbot.waitUntil(lambda: not dock.busy, timeout=60000)
        np.testing.assert_array_equal(dock.preview_mask, step.mask)
