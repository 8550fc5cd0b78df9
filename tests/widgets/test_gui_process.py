"""The real user path, in a fresh process: napari first, then our docks import torch."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.gui

SCRIPT = r"""
import napari
from qtpy.QtWidgets import QApplication
viewer = napari.Viewer(show=True)
QApplication.processEvents()          # OpenGL (Mesa llvmpipe on CI) is live from here
import sys
assert "torch" not in sys.modules, "napari alone must not import torch"
for name in ["Load study", "COCO to masks", "Train", "Predict", "Correct and export", "Segment by clicks"]:
    viewer.window.add_plugin_dock_widget("napari-tumorseg", name)
    QApplication.processEvents()
import torch
assert torch.ones(2).sum().item() == 2.0
viewer.close()
print("OK")
"""


def _run_fresh(script: str) -> subprocess.CompletedProcess:
    """``script`` in a fresh Python process (as a user starts the app); it must print OK."""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=dict(os.environ), timeout=600)
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr[-3000:]
    return res


def test_docks_import_torch_after_opengl_without_crashing():
    _run_fresh(SCRIPT)


def test_tumorseg_view_opens_docks_and_sample():
    script = (
        "from napari_tumorseg.cli.view import open_viewer\n"
        "v = open_viewer(show=True)\n"
        "names = sorted(type(l).__name__ for l in v.layers)\n"
        "assert names == ['Image', 'Labels'], names\n"
        "from npe2 import PluginManager\n"
        "manifest = {w.display_name for w in PluginManager.instance().get_manifest('napari-tumorseg').contributions.widgets}\n"
        "docked = {n.split(' (')[0] for n in v.window.dock_widgets}\n"
        "assert manifest <= docked, (manifest - docked)  # Segment by clicks included\n"
        "from qtpy.QtWidgets import QApplication\n"
        "for _ in range(5): QApplication.processEvents()\n"
        "from napari.utils.notifications import notification_manager\n"
        "said = [str(n.message) for n in notification_manager.records]\n"
        "assert not any('PyQt5' in m for m in said), said  # no banner over the scan at start\n"
        "v.close(); print('OK')\n"
    )
    res = _run_fresh(script)
    assert "PyQt5 backend is deprecated" not in res.stderr


def test_window_closed_while_a_dock_still_loads_its_model_exits_cleanly():
    # Segment by clicks loads its automatic engine in a worker as soon as it opens; a user
    # who closes the window at once must not get an abort (the worker emitting into Qt
    # objects already torn down at exit).
    script = (
        "import napari\n"
        "from qtpy.QtWidgets import QApplication\n"
        "viewer = napari.Viewer(show=True)\n"
        "QApplication.processEvents()\n"
        "viewer.window.add_plugin_dock_widget('napari-tumorseg', 'Segment by clicks')\n"
        "QApplication.processEvents()\n"
        "viewer.close()\n"
        "print('OK')\n"
    )
    assert "has been deleted" not in _run_fresh(script).stderr
