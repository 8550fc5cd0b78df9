"""Segment by clicks: keys (P/B/S/L/T/Enter/Esc), the lasso in a coronal view and the target
choice, on a real BraTS crop with real key and mouse events on the canvas."""

from itertools import pairwise

import numpy as np
import pytest
from qtpy.QtCore import QEvent, QPointF, Qt
from qtpy.QtGui import QMouseEvent
from qtpy.QtWidgets import QApplication

from napari_tumorseg.interactive.classic import ClassicEngine
from napari_tumorseg.io.readers import read_path
from tests.widgets.conftest import add_dock
from tests.widgets.test_segment_clicks import _canvas_pos

pytestmark = pytest.mark.gui

CASE = "brats_multi_year/BraTS2021_00006"


def _open_crop(viewer, shared_data):
    """FLAIR of a BraTS 2021 case, cropped around the tumour (24 x 96 x 96), and its labels."""
    case = shared_data / CASE
    flair = read_path(case / "BraTS2021_00006_flair.nii.gz")[0].data
    seg = read_path(case / "BraTS2021_00006_seg.nii.gz")[0].data
    z, y, x = (int(np.mean(ix)) for ix in np.nonzero(seg))
    box = (slice(z - 12, z + 12), slice(y - 48, y + 48), slice(x - 48, x + 48))
    layer = viewer.add_image(np.asarray(flair[box], np.float32), name="BraTS2021_00006_flair")
    return layer, np.asarray(seg[box])


def _dock(viewer, qtbot, layer):
    dock = add_dock(viewer, "Segment by clicks")
    dock.scan_combo.setCurrentText(layer.name)
    qtbot.waitUntil(lambda: dock._auto_worker is None, timeout=60000)
    dock.set_engine(_Spy())
    return dock


class _Spy(ClassicEngine):
    """The classic engine, recording the targets it is asked for."""

    name = "classic spy"

    def __init__(self):
        super().__init__()
        self.targets = []

    def channels_for(self, target, channel_names):
        self.targets.append(target)
        return super().channels_for(target, channel_names)


def _key(viewer, qtbot, key):
    qtbot.keyClick(viewer.window._qt_viewer.canvas.native, key)
    QApplication.processEvents()


def _stroke(viewer, qtbot, layer, points, modifier=Qt.NoModifier):
    """A real press, moves through ``points`` (voxels of ``layer``), release: one drag."""
    native = viewer.window._qt_viewer.canvas.native
    pos = [_canvas_pos(viewer, layer, p) for p in points]
    qtbot.mousePress(native, Qt.LeftButton, modifier, pos[0])
    for a, b in pairwise(pos):
        for t in np.linspace(0, 1, 4)[1:]:
            q = QPointF(a.x() + t * (b.x() - a.x()), a.y() + t * (b.y() - a.y()))
            QApplication.sendEvent(native, QMouseEvent(QEvent.MouseMove, q, Qt.NoButton, Qt.LeftButton, modifier))
            qtbot.wait(10)
    qtbot.mouseRelease(native, Qt.LeftButton, modifier, pos[-1])


def test_keys_pick_tools_and_polarity_only_while_the_click_tool_is_on(make_napari_viewer, qtbot, shared_data):
    viewer = make_napari_viewer(show=True)
    layer, seg = _open_crop(viewer, shared_data)
    dock = _dock(viewer, qtbot, layer)
    viewer.reset_view()
    assert dock.click_tool.isChecked()
    assert dock.tool() == "point" and "Tool: point · tumour" in dock.tool_label.text()

    for key, tool in ((Qt.Key_B, "box"), (Qt.Key_S, "scribble"), (Qt.Key_L, "lasso"), (Qt.Key_P, "point")):
        _key(viewer, qtbot, key)
        assert dock.tool() == tool, key
        assert f"Tool: {tool} ·" in dock.tool_label.text()
    # The keys still work while a prompt layer (whose layer type binds some of them) is active.
    _key(viewer, qtbot, Qt.Key_L)
    assert viewer.layers.selection.active is dock.prompt_layers.scribbles and dock.tool() == "lasso"
    _key(viewer, qtbot, Qt.Key_P)
    assert dock.tool() == "point"

    _key(viewer, qtbot, Qt.Key_T)
    assert dock.negative_radio.isChecked() and "not tumour" in dock.tool_label.text()
    _key(viewer, qtbot, Qt.Key_T)
    assert dock.positive_radio.isChecked()

    # Esc drops the prompts; Enter accepts the preview into a new labels layer.
    point = tuple(int(np.mean(ix)) for ix in np.nonzero(seg == 4))
    dock.add_click(point)
    qtbot.waitUntil(lambda: not dock.busy and dock.preview_mask is not None, timeout=60000)
    _key(viewer, qtbot, Qt.Key_Escape)
    assert dock.preview_mask is None and len(dock.prompt_layers.clicks.data) == 0
    dock.add_click(point)
    qtbot.waitUntil(lambda: not dock.busy and dock.preview_mask is not None, timeout=60000)
    mask = dock.preview_mask.copy()
    n_layers = len(viewer.layers)
    _key(viewer, qtbot, Qt.Key_Return)
    assert len(viewer.layers) == n_layers + 1
    np.testing.assert_array_equal(np.asarray(viewer.layers[-1].data) == 1, mask)

    # Click tool off: the keys are the viewer's again (B no longer picks the box).
    dock.click_tool.setChecked(False)
    viewer.layers.selection.active = layer
    _key(viewer, qtbot, Qt.Key_B)
    assert dock.tool() == "point" and "Tool: off" in dock.tool_label.text()
    dock.click_tool.setChecked(True)
    _key(viewer, qtbot, Qt.Key_B)
    assert dock.tool() == "box"


def test_lasso_and_box_in_a_coronal_view_and_the_target_reaches_the_engine(make_napari_viewer, qtbot, shared_data):
    viewer = make_napari_viewer(show=True)
    layer, seg = _open_crop(viewer, shared_data)
    dock = _dock(viewer, qtbot, layer)
    dock.region_combo.setCurrentText("whole tumour")
    assert dock.region() == "whole"

    # Coronal: rows are z, columns x; the slice is one y.
    viewer.dims.order = (1, 0, 2)
    y = int(np.argmax((seg > 0).sum(axis=(0, 2))))
    viewer.dims.set_current_step(1, y)
    viewer.reset_view()
    _key(viewer, qtbot, Qt.Key_L)
    assert dock.tool() == "lasso"
    zs, xs = np.nonzero(seg[:, y] > 0)
    zc, xc = int(np.median(zs)), int(np.median(xs))
    square = [(zc - 4, y, xc - 6), (zc - 4, y, xc + 6), (zc + 4, y, xc + 6), (zc + 4, y, xc - 6), (zc - 4, y, xc - 6)]
    _stroke(viewer, qtbot, layer, square)
    qtbot.waitUntil(lambda: not dock.busy, timeout=60000)
    scr = np.asarray(dock.prompt_layers.scribbles.data)
    assert scr[:, y].any() and not np.delete(scr, y, axis=1).any(), "the lasso lies on the coronal slice shown"
    inside = scr[zc - 3:zc + 4, y, xc - 5:xc + 6]
    assert (inside == 1).all(), "the lasso's inside is filled (tumour)"
    assert not scr[zc - 8, y, xc] and not scr[zc, y, xc + 10]
    assert dock.preview_mask is not None and dock.preview_mask[zc, y, xc]
    assert dock.session.click_engine.targets[-1] == "whole"

    # Another target re-segments with it.
    dock.region_combo.setCurrentText("enhancing")
    qtbot.waitUntil(lambda: not dock.busy, timeout=60000)
    assert dock.session.click_engine.targets[-1] == "enhancing"

    # An undo takes the lasso back as one step.
    dock.undo_prompt()
    qtbot.waitUntil(lambda: not dock.busy, timeout=60000)
    assert not np.asarray(dock.prompt_layers.scribbles.data).any()

    # A box on the coronal slice: tumour at its centre, not tumour around it on that slice.
    _key(viewer, qtbot, Qt.Key_B)
    assert dock.tool() == "box"
    c0, c1 = (int(zs.min()), y, int(xs.min())), (int(zs.max()), y, int(xs.max()))
    _stroke(viewer, qtbot, layer, [c0, c1])
    qtbot.waitUntil(lambda: not dock.busy, timeout=60000)
    prompts = dock.prompts()
    assert prompts.box is None and len(prompts.positive) == 1
    np.testing.assert_allclose(prompts.positive[0], ((c0[0] + c1[0]) / 2, y, (c0[2] + c1[2]) / 2), atol=1.0)
    around = prompts.scribbles == 2
    assert around[:, y].any() and not np.delete(around, y, axis=1).any()
    assert not around[c0[0] + 1:c1[0], y, c0[2] + 1:c1[2]].any() and around[0, y, 0]
    mask = dock.preview_mask
    assert mask is not None and mask[tuple(int(round(v)) for v in prompts.positive[0])]
    assert not (mask & around).any()
