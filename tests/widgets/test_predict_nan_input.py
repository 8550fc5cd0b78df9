"""The Predict dock on a scan with NaN voxels: one notification, and no blank map that could
be read as "no tumour" (NaN used to blank the probabilities on its slices)."""

import numpy as np
from tests.widgets.conftest import add_dock
import pytest

from tests.hostile.conftest import unet_checkpoint  # noqa: F401 - the shared tiny checkpoint fixture

pytestmark = pytest.mark.gui


def test_nan_scan_is_refused_with_one_notification(make_napari_viewer, qtbot, unet_checkpoint):  # noqa: F811
    from napari.utils.notifications import notification_manager

    viewer = make_napari_viewer()
    scan = np.random.default_rng(0).random((4, 16, 16)).astype(np.float32)
    scan[2] = np.nan
    viewer.add_image(scan, name="flair")
    widget = add_dock(viewer, "Predict")
    widget.ckpt_picker.set_path(unet_checkpoint)
    widget.device.setCurrentText("cpu")
    assert widget.load_model() is not None
    widget.image_layer.setCurrentText("flair")
    start = len(notification_manager.records)
    worker = widget.predict()
    if worker is not None:
        qtbot.waitUntil(lambda: widget._worker is None, timeout=60000)
    messages = [str(n.message) for n in notification_manager.records[start:]]
    refusals = [m for m in messages if "NaN/Inf" in m]
    assert len(refusals) == 1 and "256 voxels" in refusals[0], messages
    assert [l.name for l in viewer.layers] == ["flair"]  # no blank map to misread as "no tumour"
