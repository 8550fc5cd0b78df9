import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_tumorseg.widgets.load_study import LoadStudyWidget
from tests.widgets.conftest import add_dock, open_as_channels, save_screenshot

pytestmark = pytest.mark.gui


def test_scan_lists_series_and_opens_selected(make_napari_viewer, qtbot, shared_data, screenshot_dir):
    viewer = make_napari_viewer(show=True)
    widget = add_dock(viewer, "Load study")
    viewer.window.add_dock_widget(widget, name="Load study")
    widget.picker.set_path(shared_data / "dicom_brainix")
    study = widget.scan()
    assert widget.table.rowCount() == 3
    names = [widget.table.item(r, 0).text() for r in range(3)]
    assert any("FLAIR" in n for n in names)
    assert {widget.table.item(r, 2).text() for r in range(3)} == {"22"}
    # Untick T2: only FLAIR and ROI open.
    t2 = next(r for r, n in enumerate(names) if "T2" in n and "FLAIR" not in n)
    widget.table.item(t2, 0).setCheckState(Qt.Unchecked)
    worker = widget.open_selected()
    with qtbot.waitSignal(worker.finished, timeout=60000):
        pass
    assert len(viewer.layers) == 2
    flair = next(l for l in viewer.layers if "FLAIR" in l.name and type(l).__name__ == "Image")
    entry = next(e for e in study.entries if e.name == flair.name)
    np.testing.assert_allclose(flair.scale, entry.spacing)
    save_screenshot(viewer, screenshot_dir / "load_study.png")


def test_channels_of_one_case(make_napari_viewer, qtbot, shared_data):
    viewer = make_napari_viewer()
    open_as_channels(viewer, qtbot, shared_data / "brats2012_hg0015",
                     lambda n: any(k in n for k in ("flair", "t1c")))
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


def test_bad_path_notifies_without_traceback(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    widget = add_dock(viewer, "Load study")
    (tmp_path / "notes.txt").write_text("not an image")
    widget.picker.set_path(tmp_path)
    assert widget.scan() is None
    assert widget.table.rowCount() == 0
