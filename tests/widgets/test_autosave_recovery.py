"""Auto-save and recovery: a viewer killed with SIGKILL mid-edit loses at most one auto-save
period of work, and the next start offers the labels back on their grid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.widgets.conftest import add_dock

pytestmark = pytest.mark.gui

CHILD = r"""
import numpy as np, napari
from qtpy.QtCore import QTimer
from napari_tumorseg.cli.view import open_viewer

viewer = open_viewer(show=True)
layer = viewer.add_labels(np.zeros((8, 64, 64), np.uint8), name="my edits", scale=(5.0, 0.8, 0.8),
                          translate=(1.0, 2.0, 3.0))
layer.brush_size = 3

def first():
    layer.paint((3, 20, 20), 2)     # what napari's brush calls
    print("EDIT1", flush=True)

def second():
    layer.paint((5, 40, 40), 3)
    print("EDIT2", flush=True)

QTimer.singleShot(300, first)
QTimer.singleShot(6000, second)
napari.run()
"""


def _next_mark(stream) -> str:
    """The child's next EDIT line (napari writes its own notices to stdout too)."""
    for line in stream:
        if line.startswith("EDIT"):
            return line.strip()
    return ""


def _orphans(folder):
    from napari_tumorseg import recovery

    return recovery.orphans(folder)


def test_sigkill_mid_edit_loses_at_most_one_period_and_is_offered_back(make_napari_viewer, qtbot, tmp_path,
                                                                     monkeypatch):
    from napari_tumorseg import recovery

    folder = tmp_path / "recovery"
    period = 1.0
    env = {**os.environ, "TUMORSEG_RECOVERY_DIR": str(folder), "TUMORSEG_AUTOSAVE_SECONDS": str(period)}
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
    try:
        assert _next_mark(child.stdout) == "EDIT1"
        edited_at = time.time()
        snapshot = None
        while time.time() - edited_at < 60 and snapshot is None:
            found = list(folder.glob("*.labels.npz")) if folder.exists() else []
            snap = recovery.read_snapshot(found[0]) if found else None
            if snap is not None and snap.load()[3, 20, 20] == 2:
                snapshot = snap
            time.sleep(0.1)
        assert snapshot is not None, "no auto-save within 60 s of an edit"
        assert snapshot.saved_at - edited_at <= period + 5.0  # the period, plus a loaded machine's slack
        assert not _orphans(folder)  # its writer is alive: not offered to anyone
        assert _next_mark(child.stdout) == "EDIT2"
        child.send_signal(signal.SIGKILL)  # mid-edit: the second stroke may not be saved yet
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    (orphan,) = _orphans(folder)
    data = orphan.load()
    assert data[3, 20, 20] == 2  # the work up to the last auto-save survived the kill
    assert time.time() - orphan.saved_at <= 60

    # The next start offers it back: a notification with Restore, the layer on its grid.
    from napari.utils.notifications import notification_manager

    from napari_tumorseg.widgets import _autosave

    monkeypatch.setenv("TUMORSEG_RECOVERY_DIR", str(folder))
    _autosave._OFFERED = False
    seen = []
    notification_manager.notification_ready.connect(seen.append)
    try:
        viewer = make_napari_viewer()
        add_dock(viewer, "Correct and export")
        offers = [n for n in seen if "unsaved edits were recovered" in str(n.message)]
        assert len(offers) == 1 and [a[0] for a in offers[0].actions] == ["Restore", "Discard"]
        assert "my edits" not in str(offers[0].message)  # layer names may carry identifiers: not shown
        offers[0].actions[0][1](None)
        restored = viewer.layers["my edits (recovered)"]
        np.testing.assert_array_equal(restored.data, data)
        np.testing.assert_allclose(restored.scale, (5.0, 0.8, 0.8))
        np.testing.assert_allclose(restored.translate, (1.0, 2.0, 3.0))
        assert not _orphans(folder)  # the old snapshot is gone; the restored layer is saved anew
        assert len(list(folder.glob("*.labels.npz"))) == 1
    finally:
        notification_manager.notification_ready.disconnect(seen.append)
        _autosave._OFFERED = True
