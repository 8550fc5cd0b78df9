"""Issue 9.4: a prediction reads at a glance: untinted background, truth apart from prediction,
the volume beside the threshold, empty results said out loud, channels named once."""

import numpy as np
import pytest

from napari_tumorseg.widgets._common import show_slice
from napari_tumorseg.widgets.predict import PROBABILITY_FLOOR, label_layer_name, prob_layer_name
from tests.widgets.conftest import add_dock, open_as_channels, save_screenshot
from tests.widgets.test_predict_correct_widgets import _open_brainix, brainix_ckpt  # noqa: F401 (fixture)

pytestmark = pytest.mark.gui


def _canvas(viewer) -> np.ndarray:
    return np.asarray(viewer.screenshot(canvas_only=True, flash=False))[..., :3].astype(int)


def test_prediction_reads_apart_from_truth(make_napari_viewer, qtbot, shared_data, brainix_ckpt,  # noqa: F811
                                           screenshot_dir):
    from napari.utils.notifications import notification_manager

    viewer = make_napari_viewer(show=True)
    flair, roi = _open_brainix(viewer, shared_data)
    # The opened ROI is the ground truth: an outline in its own colour.
    assert roi.contour == 2
    widget = add_dock(viewer, "Predict")
    assert widget.hint.isVisibleTo(widget)  # no model yet: the dock says what to do
    widget.ckpt_picker.set_path(brainix_ckpt)
    widget.device.setCurrentText("cpu")
    assert widget.load_model() is not None
    assert not widget.hint.isVisibleTo(widget)
    widget.image_layer.setCurrentText(flair.name)
    with qtbot.waitSignal(widget.prediction_finished, timeout=300000):
        assert widget.predict() is not None
    prob = viewer.layers[prob_layer_name(flair.name)]
    labels = viewer.layers[label_layer_name(flair.name)]
    truth_colour = roi.colormap.map(np.array([1]))[0]
    pred_colour = labels.colormap.map(np.array([1]))[0]
    assert np.abs(truth_colour[:3] - pred_colour[:3]).sum() > 0.5  # not the same red
    assert labels.contour == 0  # the prediction is filled, the truth outlined
    assert viewer.layers.index(roi) > viewer.layers.index(labels)  # ... and drawn on top of it

    # Probabilities under the floor are fully transparent; above it they show.
    rgba = prob.colormap.map(np.array([0.0, PROBABILITY_FLOOR * 0.9, 0.5, 1.0]))
    assert rgba[0, 3] == 0 and rgba[1, 3] == 0 and rgba[2, 3] > 0 and rgba[3, 3] > 0
    z = int(np.argmax(roi.data.sum(axis=(1, 2))))
    show_slice(viewer, roi, z)
    assert round(float(roi.world_to_data(viewer.dims.point)[0])) == z
    labels.visible = roi.visible = False
    prob.visible = False
    bare = _canvas(viewer)
    prob.visible = True
    # A map whose background sits just under the floor (as a real model's does) and whose
    # tumour is one square changes the picture exactly as much as the square alone.
    real = widget.probabilities.copy()
    h, w = prob.data.shape[-2:]
    changed = []
    for background in (0.0, PROBABILITY_FLOOR * 0.8):
        widget.probabilities[...] = background
        widget.probabilities[z, h // 4:h // 2, w // 4:w // 2] = 0.8
        prob.refresh()
        changed.append(np.any(np.abs(_canvas(viewer) - bare) > 3, axis=-1))
    assert changed[0].mean() > 0.01  # the square shows
    assert (changed[1] != changed[0]).mean() < 0.001  # the background under the floor does not
    widget.probabilities[...] = real
    prob.refresh()
    labels.visible = roi.visible = True

    # The threshold slider shows the result's volume as it moves, from the cache alone.
    calls = widget.model_calls
    voxel_ml = float(np.prod(labels.scale)) / 1000.0
    for value in (30, 70, 50):
        widget.threshold.setValue(value)
        expected = np.count_nonzero(widget.probabilities > value / 100) * voxel_ml
        assert f"{expected:.2f} mL" in widget.volume_label.text()
    assert widget.model_calls == calls
    save_screenshot(viewer, screenshot_dir / "readable_prediction.png")

    # An empty result says so, and suggests a threshold: in the dock and as a notification.
    widget.threshold.setValue(99)
    if not labels.data.any():
        assert "lower threshold" in widget.volume_label.text()
    start = len(notification_manager.records)
    widget.threshold.blockSignals(True)
    widget.threshold.setValue(99)
    widget.threshold.blockSignals(False)
    widget._refresh_outputs(None)
    widget.probabilities[...] = np.minimum(widget.probabilities, 0.5)  # nothing can pass 0.99
    widget._refresh_outputs(None)
    widget._check_result(None, notify=True)
    said = [str(n.message) for n in notification_manager.records[start:]]
    assert any("no tumour" in m and "lower threshold" in m for m in said), said
    # ... and so does a result that is the whole volume.
    widget.threshold.setValue(1)
    widget.probabilities[...] = 0.9
    widget._refresh_outputs(None)
    assert "higher threshold" in widget._check_result(None, notify=True)


def test_channels_named_once_and_one_shown(make_napari_viewer, qtbot, shared_data):
    viewer = make_napari_viewer()
    open_as_channels(viewer, qtbot, shared_data / "brats2012_hg0015",
                     # The FLAIR is kept as .mha and .nii.gz: one copy, the NIfTI, as the dock ticks it.
                     lambda n: ("flair" in n or "t1c" in n) and "metaimage" not in n)
    images = [l for l in viewer.layers if type(l).__name__ == "Image"]
    assert len(images) >= 2
    for layer in images:
        words = layer.name.split()
        assert len(words) == len(set(words)), layer.name  # "AX AX FLAIR" no more
    assert sum(l.visible for l in images) == 1 and images[0].visible
