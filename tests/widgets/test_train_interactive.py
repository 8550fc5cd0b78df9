"""The Train dock's "Interactive (click-guided)" option trains a click-guided checkpoint."""

import pytest
from tests.widgets.conftest import add_dock


pytestmark = pytest.mark.gui


def test_interactive_box_trains_a_click_guided_checkpoint(make_napari_viewer, qtbot, tmp_path):
    from napari_tumorseg.interactive.encoding import ClickGuided
    from napari_tumorseg.models.checkpoint import load_checkpoint
    from napari_tumorseg.training.events import DoneEvent

    from napari_tumorseg.phantom import make_phantom

    viewer = make_napari_viewer()
    image, mask = make_phantom()
    viewer.add_image(image, name="FLAIR")
    viewer.add_labels(mask.astype(int), name="tumour")
    widget = add_dock(viewer, "Train")
    widget.model_combo.setCurrentText("unet")
    widget.small.setChecked(True)
    widget.src_layers.setChecked(True)
    widget.image_layer.setCurrentText(next(l.name for l in viewer.layers if type(l).__name__ == "Image"))
    widget.labels_layer.setCurrentText(next(l.name for l in viewer.layers if type(l).__name__ == "Labels"))
    widget.out_picker.set_path(tmp_path / "run")
    widget.epochs.setValue(1)
    widget.batch.setValue(4)
    widget.size.setValue(64)
    widget.device.setCurrentText("cpu")
    widget.interactive.setChecked(True)
    assert widget.start() is not None
    qtbot.waitUntil(lambda: widget._worker is None, timeout=300000)
    assert isinstance(widget.last_result, DoneEvent)
    model, ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert isinstance(model, ClickGuided) and ckpt["config"]["interactive"]["channels"] == 3
