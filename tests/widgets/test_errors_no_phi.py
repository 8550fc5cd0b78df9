"""Issue 9.7: one clear line per error, what can be opened is opened, no patient data anywhere."""

import logging

import numpy as np
import pydicom
import pytest

from napari_tumorseg.widgets._common import thread_worker, worker_error_handler
from tests.widgets.conftest import add_dock, save_screenshot, wait_for_worker

pytestmark = pytest.mark.gui


def _identifiers(folder) -> list[str]:
    """What identifies BRAINIX's patient and study in its own headers."""
    ds = pydicom.dcmread(next(p for p in sorted(folder.rglob("*")) if p.is_file()), stop_before_pixels=True)
    found = [str(ds.PatientName), str(ds.get("PatientID", "")), str(ds.get("StudyDate", "")),
             str(ds.get("PatientBirthDate", "")), ds.StudyInstanceUID, ds.SeriesInstanceUID,
             ds.SOPInstanceUID]
    return [v for v in found if len(v) >= 4]


@pytest.fixture
def notifications():
    from napari.utils.notifications import notification_manager

    start = len(notification_manager.records)
    yield lambda: [str(n.message) for n in notification_manager.records[start:]]


def test_brainix_as_channels_opens_each_series_with_one_notice(make_napari_viewer, qtbot, shared_data, capfd,
                                                               caplog, notifications, screenshot_dir):
    caplog.set_level(logging.DEBUG)
    folder = shared_data / "dicom_brainix"
    secrets = _identifiers(folder / "FLAIR")
    assert "BRAINIX" in secrets  # the patient name this test keeps out of every message

    viewer = make_napari_viewer(show=True)
    widget = add_dock(viewer, "Load study")
    widget.picker.set_path(folder)
    assert widget.scan() is not None and widget.table.rowCount() == 3
    from qtpy.QtCore import Qt

    for r in range(widget.table.rowCount()):  # the ROI (a mask) comes unticked: tick it too
        widget.table.item(r, 0).setCheckState(Qt.Checked)
    widget.as_channels.setChecked(True)
    before = len(notifications())
    worker = widget.open_selected()
    wait_for_worker(qtbot, worker, timeout=120000)
    qtbot.wait(50)

    # FLAIR (288²) and T2 (512²) cannot be one case: both open, with the ROI, and ONE notice says why.
    assert len(viewer.layers) == 3
    assert sorted(type(l).__name__ for l in viewer.layers) == ["Image", "Image", "Labels"]
    said = notifications()[before:]
    about_channels = [m for m in said if "channels" in m]
    assert len(about_channels) == 1, said
    assert "separately" in about_channels[0] and "FLAIR" in about_channels[0]
    # Several scans opened together do not hide each other: one shows, the others are listed.
    images = [l for l in viewer.layers if type(l).__name__ == "Image"]
    # The FLAIR is the one shown (its series is listed after the T2's).
    assert sorted((l.name.split()[0], l.visible) for l in images) == [("FLAIR", True), ("T2", False)]
    roi = next(l for l in viewer.layers if type(l).__name__ == "Labels")
    assert roi.visible and roi.contour == 2
    viewer.dims.set_current_step(0, int(np.argmax(roi.data.sum(axis=(1, 2)))))
    save_screenshot(viewer, screenshot_dir / "brainix_as_channels.png")

    # A failed scan leaves no stale series table behind.
    widget.picker.set_path(folder / "no such folder")
    assert widget.scan() is None
    assert widget.table.rowCount() == 0 and widget.study is None
    assert widget.open_selected() is None  # nothing stale to open

    out, err = capfd.readouterr()
    everything = "\n".join([out, err, caplog.text, *notifications()])
    for secret in secrets:
        assert secret not in everything, f"a patient/study identifier leaked ({len(secret)} chars)"
    assert "Traceback" not in everything


def test_unexpected_worker_error_is_one_sanitised_line(make_napari_viewer, qtbot, capfd, caplog, notifications):
    make_napari_viewer()
    caplog.set_level(logging.DEBUG)
    uid, name, date = "1.3.46.670589.11.0.0.11.4.2.0.8743.5.5396.2006120114314079549", "Doe^Jane", "20061201"

    @thread_worker
    def work():
        header = {"PatientName": name, "StudyInstanceUID": uid}  # a local a traceback would print
        raise ValueError(f"bad header {header['StudyInstanceUID']} of {header['PatientName']} on {date}")

    worker = work()
    worker.errored.connect(worker_error_handler("loading failed"))
    with qtbot.waitSignal(worker.finished, timeout=10000):
        worker.start()
    qtbot.wait(50)
    said = notifications()
    assert len(said) == 1 and said[0].startswith("loading failed: ValueError: bad header")
    out, err = capfd.readouterr()
    everything = "\n".join([out, err, caplog.text, *said])
    for secret in (uid, name, date, "Doe", "Jane"):
        assert secret not in everything
    assert "Traceback" not in everything


def test_unexpected_error_in_a_button_is_one_sanitised_line(make_napari_viewer, shared_data, monkeypatch, capfd,
                                                            caplog, notifications):
    """A bug behind a button reaches the user as one line, not napari's traceback with locals."""
    import napari_tumorseg.measurements as measurements
    from tests.widgets.test_predict_correct_widgets import _open_brainix

    viewer = make_napari_viewer()
    _, roi = _open_brainix(viewer, shared_data)
    widget = add_dock(viewer, "Correct and export")
    widget.labels_combo.setCurrentText(roi.name)
    uid = _identifiers(shared_data / "dicom_brainix" / "ROI")[-2]  # its SeriesInstanceUID
    caplog.set_level(logging.DEBUG)

    def broken(labels, spacing, names=None, **_):
        secret = {"SeriesInstanceUID": uid, "PatientName": "BRAINIX^Test"}  # a local a traceback shows
        raise KeyError(f"{secret['SeriesInstanceUID']} / {secret['PatientName']}")

    monkeypatch.setattr(measurements, "measure", broken)
    start = len(notifications())
    widget.measure_button.click()
    said = notifications()[start:]
    assert len(said) == 1 and said[0].startswith("measuring failed: KeyError"), said
    out, err = capfd.readouterr()
    everything = "\n".join([out, err, caplog.text, *said])
    assert uid not in everything and "BRAINIX" not in everything and "Traceback" not in everything


def test_reader_failure_carries_no_header_frames(tmp_path, monkeypatch):
    """File → Open: napari shows a reader's error with its traceback's local variables, so
    the error the plugin raises has no frame below the reader hook."""
    import napari_tumorseg._reader as hook
    from napari_tumorseg.errors import ReadError

    def parse(path):
        header = {"PatientName": "Doe^Jane", "StudyDate": "20061201"}  # a header being parsed
        raise ValueError(f"bad tag in {header['PatientName']}")

    monkeypatch.setattr(hook, "read_path", parse)
    with pytest.raises(ReadError) as info:
        hook.read_layers(str(tmp_path / "IM-0001.dcm"))
    err = info.value
    assert "Doe" not in str(err) and "IM-0001.dcm" in str(err)
    assert err.__cause__ is None and err.__suppress_context__
    frames, tb = [], err.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    assert frames and all("Doe" not in repr(v) for f in frames for v in f.f_locals.values())
