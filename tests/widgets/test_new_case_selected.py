"""A study opened after another becomes the scan of the docks that work on one (issue 14,
"state follows the case"): Predict, Segment by clicks and Train's "Open layers" no longer stay on the sample."""

from __future__ import annotations

import pytest

from napari_tumorseg.cli.view import open_viewer
from tests.widgets.conftest import open_as_channels

pytestmark = pytest.mark.gui


def _dock(viewer, name):
    return next(w for title, w in viewer.window.dock_widgets.items() if title.startswith(name))


def test_the_case_opened_last_is_the_docks_scan(make_napari_viewer, qtbot, shared_data):
    viewer = open_viewer(viewer=make_napari_viewer())  # tumorseg view: every dock and the sample
    predict, clicks = _dock(viewer, "Predict"), _dock(viewer, "Segment by clicks")
    first = predict.image_layer.currentText()
    assert first and clicks.scan_combo.currentText() == first  # the sample's scan

    open_as_channels(viewer, qtbot, shared_data / "brats_multi_year" / "BraTS2021_00002", lambda n: "seg" not in n)
    assert predict.image_layer.currentText() == "FLAIR · BraTS2021_00002"
    assert clicks.scan_combo.currentText() == "FLAIR · BraTS2021_00002"

    # File -> Open (the plugin's reader) of a single scan: the same.
    viewer.open(str(shared_data / "brats2013_deepmedic" / "validation" / "brats_2013_pat0003_1"
                    / "Flair_subtrMeanDivStd.nii.gz"), plugin="napari-tumorseg")
    newest = viewer.layers[-1].name
    assert predict.image_layer.currentText() == newest == clicks.scan_combo.currentText()


def test_a_case_folder_opened_by_file_open_gives_the_docks_its_shown_scan(make_napari_viewer, qtbot, shared_data):
    """File -> Open of a case folder (or `tumorseg view CASE`): its first scan shows, the
    others open hidden; the docks take the one on screen, not the last file (the T2)."""
    viewer = open_viewer(viewer=make_napari_viewer())
    predict, clicks = _dock(viewer, "Predict"), _dock(viewer, "Segment by clicks")
    viewer.open(str(shared_data / "brats_multi_year" / "BraTS2021_00006"), plugin="napari-tumorseg")
    shown = [l.name for l in viewer.layers if type(l).__name__ == "Image" and l.visible and "00006" in l.name]
    hidden = [l.name for l in viewer.layers if type(l).__name__ == "Image" and not l.visible and "00006" in l.name]
    assert shown == ["BraTS2021_00006_flair"] and "BraTS2021_00006_t2" in hidden, (shown, hidden)
    assert predict.image_layer.currentText() == "BraTS2021_00006_flair" == clicks.scan_combo.currentText()
    # The layer controls adjust the scan on screen (napari made the last file active: a hidden
    # scan, or the truth); the truth's outlines lie above every scan of the case.
    qtbot.wait(50)
    assert viewer.layers.selection.active.name == "BraTS2021_00006_flair"
    case = [l.name for l in viewer.layers if "00006" in l.name]
    assert case[-1] == "BraTS2021_00006_seg", case
    # A label map opened on its own later is left active: it is what the user just asked for.
    viewer.open(str(shared_data / "brats_multi_year" / "BraTS2021_00006" / "BraTS2021_00006_seg.nii.gz"),
                plugin="napari-tumorseg")
    qtbot.wait(50)
    assert viewer.layers.selection.active is viewer.layers[-1]
    assert type(viewer.layers[-1]).__name__ == "Labels"


def test_train_open_layers_take_the_new_case_and_its_segmentation(make_napari_viewer, qtbot, shared_data):
    viewer = open_viewer(viewer=make_napari_viewer())
    train = _dock(viewer, "Train")
    sample_scan = train.image_layer.currentText()
    open_as_channels(viewer, qtbot, shared_data / "brats_multi_year" / "BraTS2021_00002", lambda n: True)
    assert train.image_layer.currentText() == "FLAIR · BraTS2021_00002" != sample_scan
    seg = train.labels_layer.currentText()
    assert "BraTS2021_00002" in seg and "seg" in seg.lower(), seg


def _idle(viewer, qtbot) -> None:
    """The click dock's model load and scan warm-up, started by the case, ended: a worker still
    holding the dock when the test's viewer closes would count as a leaked viewer."""
    clicks = _dock(viewer, "Segment by clicks")
    qtbot.waitUntil(lambda: clicks._auto_worker is None and not clicks.busy, timeout=60000)


def _front_tab(viewer) -> str:
    from qtpy.QtWidgets import QTabBar

    bar = next(b for b in viewer.window._qt_window.findChildren(QTabBar)
               if "Load study" in [b.tabText(i) for i in range(b.count())])
    return bar.tabText(bar.currentIndex())


def test_tumorseg_view_of_a_study_puts_the_click_dock_in_front(make_napari_viewer, qtbot, shared_data):
    """With a study given, its next step is a click (the click tool holds the canvas): the
    Segment by clicks tab is the one shown; with none given, Load study is."""
    viewer = open_viewer(str(shared_data / "brats_multi_year" / "BraTS2021_00006"), show=True,
                         viewer=make_napari_viewer(show=True))
    qtbot.waitUntil(lambda: _front_tab(viewer) == "Segment by clicks", timeout=5000)
    _idle(viewer, qtbot)

    bare = open_viewer(show=True, viewer=make_napari_viewer(show=True))
    qtbot.wait(100)
    assert _front_tab(bare) == "Load study"


def test_predict_slice_numbers_span_the_scan_and_start_at_the_slice_on_screen(make_napari_viewer, qtbot,
                                                                               shared_data):
    """Predict's "from / to" apply to "Slices" only (greyed otherwise), reach the chosen scan's
    last slice and no further, and start at the slice on screen instead of a blank 0-0."""
    viewer = open_viewer(str(shared_data / "brats_multi_year" / "BraTS2021_00006"), viewer=make_napari_viewer())
    predict = _dock(viewer, "Predict")
    assert predict.range_all.isChecked()
    assert not predict.z_from.isEnabled() and not predict.z_to.isEnabled()
    assert predict.z_to.maximum() == 154  # 155 axial slices
    viewer.dims.set_current_step(0, 80)
    predict.range_span.setChecked(True)
    assert predict.z_from.isEnabled() and (predict.z_from.value(), predict.z_to.value()) == (80, 80)
    predict.z_to.setValue(500)
    assert predict.z_to.value() == 154
    _idle(viewer, qtbot)


def test_a_2023_case_opens_on_its_flair_not_its_first_file(make_napari_viewer, qtbot, shared_data):
    """BraTS 2023 names its files t1c, t1n, t2f, t2w and holds no segmentation: `tumorseg view`
    shows the FLAIR (t2f), makes it the active layer and the docks' scan."""
    viewer = open_viewer(str(shared_data / "brats2023_gli_00001"), viewer=make_napari_viewer())
    predict, clicks = _dock(viewer, "Predict"), _dock(viewer, "Segment by clicks")
    qtbot.wait(50)
    shown = [l.name for l in viewer.layers if type(l).__name__ == "Image" and l.visible and "00001" in l.name]
    assert shown == ["BraTS-GLI-00001-000-t2f"], shown
    assert viewer.layers.selection.active.name == "BraTS-GLI-00001-000-t2f"
    assert predict.image_layer.currentText() == "BraTS-GLI-00001-000-t2f" == clicks.scan_combo.currentText()
    _idle(viewer, qtbot)


def test_closing_the_viewer_starts_no_warm_up(make_napari_viewer, qtbot, shared_data):
    """Closing the viewer removes its layers one by one; each removal used to prepare the scan
    left open for a click nobody would make (a background job started by the close itself)."""
    viewer = open_viewer(str(shared_data / "brats_multi_year" / "BraTS2021_00006"), show=True,
                         viewer=make_napari_viewer(show=True))
    clicks = _dock(viewer, "Segment by clicks")
    _idle(viewer, qtbot)
    assert clicks.warm_ups >= 1  # the case's scan was prepared for its first click
    before = clicks.warm_ups
    viewer.close()
    qtbot.wait(300)
    assert clicks.warm_ups == before
