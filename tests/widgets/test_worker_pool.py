"""The plugin's workers run on a pool of their own, never on Qt's global one.

Qt converts and scales images on its global pool while the GUI thread waits for them,
holding Python's lock (napari's activity spinner does this each time a progress bar
appears). A plugin worker waiting for that lock on one of the global pool's threads hung
the window for good: on two cores the global pool has two threads, and a click model
loading beside a scan being prepared took both (seen as a CI run that never ended)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.gui

_SCRIPT = textwrap.dedent("""
    import sys, time
    from qtpy.QtCore import QThreadPool
    from qtpy.QtGui import QImage
    from qtpy.QtWidgets import QApplication
    from napari.qt.threading import create_worker
    from napari_tumorseg.widgets._common import start_worker

    app = QApplication([])

    def spin(seconds):  # pure Python: it needs the interpreter lock all along
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    workers = [create_worker(spin, 2.0, _start_thread=False)
               for _ in range(QThreadPool.globalInstance().maxThreadCount())]
    for w in workers:
        w.start() if sys.argv[1] == "global" else start_worker(w)
    time.sleep(0.3)
    image = QImage(3000, 3000, QImage.Format_ARGB32)
    image.fill(0)
    image.convertToFormat(QImage.Format_RGB888)  # split over Qt's global pool
    print("converted")
""")


def _run(where: str) -> subprocess.CompletedProcess | None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    try:
        return subprocess.run([sys.executable, "-c", _SCRIPT, where], env=env, capture_output=True,
                              text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return None


def test_busy_plugin_workers_leave_qt_its_image_threads():
    done = _run("plugin")
    assert done is not None and done.returncode == 0 and "converted" in done.stdout, done
    # The same workers on Qt's global pool: the conversion never finishes (the hang this
    # guards against; a pool of one's own is what makes the difference).
    assert _run("global") is None


def test_every_dock_worker_of_a_session_runs_off_the_global_pool(make_napari_viewer, qtbot, shared_data,
                                                                 monkeypatch):
    """`tumorseg view` on a case: the click dock's model load, its warm-up and a click, and a
    Predict run — none started on Qt's global pool."""
    from superqt.utils._qthreading import WorkerBase

    from napari_tumorseg.cli.view import open_viewer
    from napari_tumorseg.interactive.robot import next_click
    from napari_tumorseg.interactive.targets import target_truth
    from napari_tumorseg.widgets.predict import PredictWidget
    from napari_tumorseg.widgets.segment_clicks import SegmentClicksWidget

    on_global = []
    original = WorkerBase.start
    monkeypatch.setattr(WorkerBase, "start", lambda self: (on_global.append(self), original(self))[1])

    case = shared_data / "brats_multi_year" / "BraTS2021_00006"
    viewer = open_viewer(str(case), show=True, viewer=make_napari_viewer(show=True))
    docks = {type(w): w for w in viewer.window._qt_window.findChildren(SegmentClicksWidget)
             + viewer.window._qt_window.findChildren(PredictWidget)}
    clicks, predict = docks[SegmentClicksWidget], docks[PredictWidget]
    flair = viewer.layers["BraTS2021_00006_flair"]
    clicks.scan_combo.setCurrentText(flair.name)
    qtbot.waitUntil(lambda: clicks._auto is not None and clicks._auto_worker is None, timeout=60000)
    qtbot.waitUntil(lambda: not clicks.busy, timeout=60000)
    assert clicks.warm_ups >= 1
    truth = target_truth(np.asarray(viewer.layers["BraTS2021_00006_seg"].data), "whole", names=["x"])
    point, _ = next_click(np.zeros(truth.shape, bool), truth, flair.scale)
    clicks.add_click(tuple(point), True)
    qtbot.waitUntil(lambda: not clicks.busy and clicks.preview_mask is not None, timeout=120000)

    predict.device.setCurrentText("cpu")
    predict.image_layer.setCurrentText(flair.name)
    z = int(point[0])
    predict.range_span.setChecked(True)
    predict.z_from.setValue(z)
    predict.z_to.setValue(z + 1)
    with qtbot.waitSignal(predict.prediction_finished, timeout=300000):
        assert predict.predict() is not None
    assert not [w for w in on_global if _plugin_code(w)]


def _plugin_code(worker) -> bool:
    """Whether ``worker`` runs this plugin's code (its function or generator)."""
    func, gen = getattr(worker, "_func", None), getattr(worker, "_gen", None)
    where = getattr(func, "__code__", None) or getattr(gen, "gi_code", None)
    return where is not None and "napari_tumorseg" in where.co_filename
