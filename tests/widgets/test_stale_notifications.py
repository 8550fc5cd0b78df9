"""A notification about older work never outlives it: a failure toast goes once a later
prediction succeeds."""

import pytest
from qtpy.QtWidgets import QDialog

from tests.widgets.conftest import add_dock
from tests.widgets.test_session import _ckpt

pytestmark = pytest.mark.gui


def _toasts(viewer):
    return [d for d in viewer.window._qt_window.findChildren(QDialog)
            if type(d).__name__ == "NapariQtNotification" and d.isVisible()]


def test_an_old_failure_toast_goes_when_predict_succeeds(make_napari_viewer, qtbot, shared_data, tmp_path):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.activateWindow()
    viewer.open(str(shared_data / "dicom_brainix" / "FLAIR"), plugin="napari-tumorseg")
    predict = add_dock(viewer, "Predict")
    predict.ckpt_picker.set_path(tmp_path / "missing.pt")
    assert predict.load_model() is None  # the user picked a file that is not there: a toast
    qtbot.waitUntil(lambda: len(_toasts(viewer)) >= 1, timeout=5000)
    for toast in _toasts(viewer):
        toast.timer.stop()  # as when the mouse rests on it: it would stay up
    predict.ckpt_picker.set_path(_ckpt(tmp_path / "one.pt", 1, ["FLAIR"]))
    predict.device.setCurrentText("cpu")
    assert predict.load_model() is not None
    predict.range_current.setChecked(True)
    with qtbot.waitSignal(predict.prediction_finished, timeout=120000):
        assert predict.predict() is not None
    qtbot.waitUntil(lambda: not any("missing.pt" in " ".join(l.text() for l in t.findChildren(type(predict.status)))
                                    for t in _toasts(viewer)), timeout=5000)
