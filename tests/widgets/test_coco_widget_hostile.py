"""The COCO dock on a hostile export: polygons at 3e9 used to segfault napari (with the
user's unsaved edits) inside pycocotools; now the preview shows the valid part and the
conversion names the bad record once."""

import pytest
from tests.widgets.conftest import add_dock, wait_for_worker

from napari_tumorseg.widgets.coco_masks import PREVIEW_PREFIX
from tests.hostile.test_hostile_coco import SQUARE, make_export, polygon_ann

pytestmark = pytest.mark.gui


@pytest.fixture
def notifications():
    from napari.utils.notifications import notification_manager

    start = len(notification_manager.records)
    yield lambda: [str(n.message) for n in notification_manager.records[start:]]


def test_huge_coordinates_in_the_coco_dock(make_napari_viewer, qtbot, tmp_path, notifications):
    viewer = make_napari_viewer()
    widget = add_dock(viewer, "COCO to masks")
    anns = [polygon_ann([0, 0, 3e9, 0, 3e9, 3e9]), {**polygon_ann(SQUARE), "id": 8}]
    src = make_export(tmp_path / "export", anns)
    widget.coco_picker.set_path(src)
    assert widget.load()
    shapes = [l for l in viewer.layers if l.name == f"{PREVIEW_PREFIX}: polygons"]
    assert len(shapes) == 1 and len(shapes[0].data) == 1  # only the valid square is drawn
    assert abs(shapes[0].data[0]).max() < 64
    widget.out_picker.set_path(tmp_path / "masks")
    worker = widget.convert()
    wait_for_worker(qtbot, worker, timeout=60000)
    # All or nothing (coco2mask's rule): an invalid record means no mask is written, and one
    # notice names it.
    qtbot.waitUntil(lambda: any("invalid record" in m for m in notifications()), timeout=10000)
    assert not (tmp_path / "masks").exists() or not any((tmp_path / "masks").rglob("*.tif"))
    warned = [m for m in notifications() if "invalid record" in m]
    assert len(warned) == 1 and "a.jpg" in warned[0] and "outside" in warned[0]


def test_skip_invalid_in_the_coco_dock_writes_the_valid_masks(make_napari_viewer, qtbot, tmp_path, notifications):
    viewer = make_napari_viewer()
    widget = add_dock(viewer, "COCO to masks")
    anns = [polygon_ann([0, 0, 3e9, 0, 3e9, 3e9]), {**polygon_ann(SQUARE), "id": 8}]
    src = make_export(tmp_path / "export", anns)
    widget.coco_picker.set_path(src)
    assert widget.load()
    widget.out_picker.set_path(tmp_path / "masks")
    widget.skip_invalid.setChecked(True)
    worker = widget.convert()
    wait_for_worker(qtbot, worker, timeout=60000)
    qtbot.waitUntil(lambda: widget.last_report is not None, timeout=10000)
    # the one image here carries the invalid record too, so it gets no mask: a mask missing
    # one of its annotations would be a wrong outline; the record is named once
    assert widget.last_report.invalid and "outside" in widget.last_report.invalid[0]
    warned = [m for m in notifications() if "invalid record" in m]
    assert len(warned) == 1
