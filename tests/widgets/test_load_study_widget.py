import numpy as np
import pytest
from qtpy.QtCore import Qt

from tests.widgets.conftest import add_dock, open_as_channels, save_screenshot, wait_for_worker

pytestmark = pytest.mark.gui

BRATS13 = ("brats2013_deepmedic", "validation", "brats_2013_pat0003_1")


@pytest.fixture
def notifications():
    from napari.utils.notifications import notification_manager

    start = len(notification_manager.records)
    return lambda: [str(n.message) for n in notification_manager.records[start:]]


def _rows(widget) -> dict[str, int]:
    return {widget.table.item(r, 0).text(): r for r in range(widget.table.rowCount())}


def _ticked(widget) -> set[str]:
    return {widget.table.item(r, 0).text() for r in widget.checked_rows()}


def _open(widget, qtbot):
    worker = widget.open_selected()
    wait_for_worker(qtbot, worker, timeout=120000)


def test_scan_lists_series_and_opens_selected(make_napari_viewer, qtbot, shared_data, screenshot_dir):
    viewer = make_napari_viewer(show=True)
    widget = add_dock(viewer, "Load study")
    widget.picker.set_path(shared_data / "dicom_brainix")
    study = widget.scan()
    rows = _rows(widget)
    assert set(rows) == {"sT2W/FLAIR", "sT2/TSE/T", "FLAIR_ROI"}
    assert {widget.table.item(r, 2).text() for r in rows.values()} == {"22"}
    # The scans are ticked; the ROI series is a mask, offered unticked.
    assert _ticked(widget) == {"sT2W/FLAIR", "sT2/TSE/T"}
    assert widget.table.item(rows["FLAIR_ROI"], 5).text() == "mask (labels)"
    # Tick the ROI, untick T2: FLAIR opens as an image, the ROI as labels.
    widget.table.item(rows["FLAIR_ROI"], 0).setCheckState(Qt.Checked)
    widget.table.item(rows["sT2/TSE/T"], 0).setCheckState(Qt.Unchecked)
    _open(widget, qtbot)
    assert [(type(l).__name__, l.name) for l in viewer.layers] == [
        ("Image", "FLAIR · dicom_brainix"), ("Labels", "FLAIR_ROI · dicom_brainix")]
    flair = viewer.layers["FLAIR · dicom_brainix"]
    entry = next(e for e in study.entries if e.layer_name == flair.name)
    np.testing.assert_allclose(flair.scale, entry.spacing)
    save_screenshot(viewer, screenshot_dir / "load_study.png")


def test_a_case_opens_its_scans_as_channels_and_its_masks_only_when_ticked(make_napari_viewer, qtbot,
                                                                          shared_data):
    """Issue 14: the ground truth and the brain mask used to be ticked with the scans, and the
    T1c of a BraTS 2013 case was named "Flair_subtrMeanDivStd T1c"."""
    viewer = make_napari_viewer()
    widget = add_dock(viewer, "Load study")
    widget.picker.set_path(shared_data.joinpath(*BRATS13))
    widget.scan()
    rows = _rows(widget)
    assert set(rows) == {"Flair_subtrMeanDivStd", "T1c_subtrMeanDivStd", "OTMultiClass", "brainmask"}
    assert _ticked(widget) == {"Flair_subtrMeanDivStd", "T1c_subtrMeanDivStd"}
    widget.as_channels.setChecked(True)
    _open(widget, qtbot)
    assert [(type(l).__name__, l.name) for l in viewer.layers] == [
        ("Image", "FLAIR · brats_2013_pat0003_1"), ("Image", "T1c · brats_2013_pat0003_1")]
    from napari_tumorseg.widgets._session import session_for

    case = session_for(viewer).volume_of(viewer.layers[0])
    assert case.channel_names == ["FLAIR", "T1c"] and case.data.shape[0] == 2

    # The user ticks the ground truth: it opens as a labels layer, never as a channel.
    for r in range(widget.table.rowCount()):
        widget.table.item(r, 0).setCheckState(Qt.Unchecked)
    widget.table.item(rows["OTMultiClass"], 0).setCheckState(Qt.Checked)
    _open(widget, qtbot)
    truth = viewer.layers[-1]
    assert type(truth).__name__ == "Labels" and truth.name == "OTMultiClass · brats_2013_pat0003_1"
    assert set(np.unique(np.asarray(truth.data)).tolist()) <= {0, 1, 2, 3, 4}
    assert len(viewer.layers) == 3


def test_channels_of_one_case(make_napari_viewer, qtbot, shared_data):
    viewer = make_napari_viewer()
    # The folder keeps the FLAIR twice (NIfTI and the original MetaImage): one of them.
    open_as_channels(viewer, qtbot, shared_data / "brats2012_hg0015",
                     lambda n: any(k in n for k in ("flair", "t1c")) and "metaimage" not in n)
    images = [l for l in viewer.layers if type(l).__name__ == "Image"]
    # As channels: ONE case volume (c, z, y, x) behind both layers. Opened separately they
    # would be two volumes of one shape, which is what this must tell apart.
    from napari_tumorseg.widgets._session import session_for

    assert len(images) == 2
    cases = {id(session_for(viewer).volume_of(l)) for l in images}
    assert len(cases) == 1
    case = session_for(viewer).volume_of(images[0])
    assert case.has_channels and case.data.shape[0] == 2
    assert sorted(n.lower()[:2] for n in case.channel_names) == ["fl", "t1"]
    assert len({l.data.shape for l in images}) == 1
    assert [l.name for l in images] == ["FLAIR · brats2012_hg0015", "T1c · brats2012_hg0015"]


def test_bad_path_notifies_without_traceback(make_napari_viewer, tmp_path, notifications):
    viewer = make_napari_viewer()
    widget = add_dock(viewer, "Load study")
    (tmp_path / "notes.txt").write_text("not an image")
    widget.picker.set_path(tmp_path)
    assert widget.scan() is None
    assert widget.table.rowCount() == 0
    # A text file that carries a DICOM name: said in one line, by its name.
    (tmp_path / "x.dcm").write_text("meeting notes")
    widget.picker.set_path(tmp_path / "x.dcm")
    assert widget.scan() is None
    said = [m for m in notifications() if "x.dcm" in m]
    assert len(said) == 1 and said[0].endswith("x.dcm: not a DICOM file"), said
    assert str(tmp_path) not in said[0] and "\n" not in said[0]
