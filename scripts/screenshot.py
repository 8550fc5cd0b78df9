"""Regenerate docs/screenshot.png: what `tumorseg view` shows, with the sample case.

Run under a display (or `xvfb-run -a python scripts/screenshot.py`).
"""

import sys
from pathlib import Path

from qtpy.QtWidgets import QApplication

from napari_tumorseg.cli.view import open_viewer

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "screenshot.png"
viewer = open_viewer(show=True)
viewer.window._qt_window.resize(1500, 950)
labels = next(l for l in viewer.layers if type(l).__name__ == "Labels")
viewer.dims.set_current_step(0, int(labels.data.sum(axis=(1, 2)).argmax()))
dock, load = viewer.window.add_plugin_dock_widget("napari-tumorseg", "Load study")
from napari_tumorseg._sample_data import PHANTOM_DIR

load.picker.set_path(PHANTOM_DIR)
load.scan()
for _ in range(5):
    QApplication.processEvents()
viewer.reset_view()
for _ in range(5):
    QApplication.processEvents()
from skimage.io import imsave

imsave(out, viewer.screenshot(canvas_only=False, flash=False), check_contrast=False)
print(out)
viewer.close()
