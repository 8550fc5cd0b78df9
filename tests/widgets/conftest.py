import os
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
    QApplication.processEvents()
    img = viewer.screenshot(canvas_only=False, flash=False)
    imsave(path, img, check_contrast=False)
    # A real render has many distinct colours; a blank or black window has a handful.
    assert len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 50
    return img
