import os
import time
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def screenshot_dir(tmp_path) -> Path:
    """Where widget screenshots go: TUMORSEG_SCREENSHOTS to keep them, else tmp."""
    d = Path(os.environ.get("TUMORSEG_SCREENSHOTS", tmp_path))
    d.mkdir(parents=True, exist_ok=True)
    return d


def save_screenshot(viewer, path: Path) -> np.ndarray:
    from qtpy.QtWidgets import QApplication
    from skimage.io import imsave

    viewer.window._qt_window.resize(1500, 950)
    # The docks lay themselves out over several event-loop turns after a resize; one turn
    # grabbed them half-laid (clipped at the window's edge).
    for _ in range(10):
        QApplication.processEvents()
        time.sleep(0.02)
    img = viewer.screenshot(canvas_only=False, flash=False)
    imsave(path, img, check_contrast=False)
    # A real render has many distinct colours; a blank or black window has a handful.
    assert len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 50
    return img


def add_dock(viewer, name: str):
    """Open one of the plugin's docks as a user does (Plugins menu): through napari's plugin
    manager, which hands the widget its own proxy of the viewer. Returns the dock's widget."""
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-tumorseg", name)
    return widget


def open_as_channels(viewer, qtbot, folder: Path, keep):
    """Scan ``folder`` in the Load study dock, tick the rows whose name ``keep`` accepts,
    open them "as channels" and wait for the worker; returns the dock."""
    from qtpy.QtCore import Qt

    widget = add_dock(viewer, "Load study")
    widget.picker.set_path(folder)
    widget.scan()
    for r in range(widget.table.rowCount()):
        item = widget.table.item(r, 0)
        item.setCheckState(Qt.Checked if keep(item.text().lower()) else Qt.Unchecked)
    widget.as_channels.setChecked(True)
    worker = widget.open_selected()
    wait_for_worker(qtbot, worker, timeout=120000)
    return widget


def wait_for_worker(qtbot, worker, timeout: int = 120000) -> None:
    """Wait until a worker a dock started (``start_worker``) has finished and its signals'
    slots have run. Not ``qtbot.waitSignal(worker.finished)`` entered after the dock started
    it: on a loaded machine the worker can finish before the wait connects and the signal is
    missed (seen in CI with a training run beside it: the layers opened, the wait timed out).
    ``start_worker`` connects its bookkeeping before the start, so this cannot miss."""
    from napari_tumorseg.widgets._common import _RUNNING

    assert worker is not None
    qtbot.waitUntil(lambda: worker not in _RUNNING, timeout=timeout)
