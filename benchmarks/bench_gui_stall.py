"""GUI event-loop stalls while the Train dock trains (issue 4).

A 10 ms QTimer runs on the GUI thread while a small U-Net trains in the dock's
thread_worker on the sample phantom (open layers). Every gap between ticks longer than
the 10 ms period is time the viewer could not repaint or answer the mouse. Reports p50,
p99 and the maximum gap, for the whole run and for the training steps alone (after the
one-off model/data set-up).

Run: xvfb-run -a python benchmarks/bench_gui_stall.py [--epochs 8] [--full-width]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--full-width", action="store_true", help="paper width U-Net (slow on CPU)")
    args = ap.parse_args()

    import napari
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    from napari_tumorseg.widgets.train import TrainWidget

    viewer = napari.Viewer(show=True)
    viewer.open_sample("napari-tumorseg", "mri_phantom")
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w, name="Train")
    w.model_combo.setCurrentText("unet")
    w.small.setChecked(not args.full_width)
    w.src_layers.setChecked(True)
    w.image_layer.setCurrentIndex(0)
    w.labels_layer.setCurrentIndex(0)
    out = tempfile.mkdtemp(prefix="gui_stall_")
    w.out_picker.set_path(out)
    w.epochs.setValue(args.epochs)
    w.batch.setValue(4)
    w.size.setValue(args.size)
    w.device.setCurrentText("cpu")

    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    app = QApplication.instance()
    timer.start()
    t0 = time.perf_counter()
    w.start()
    while w._worker is not None and time.perf_counter() - t0 < 3600:
        app.processEvents(QEventLoop.AllEvents, 20)
        time.sleep(0.001)
    timer.stop()
    gaps = np.diff(ticks) * 1000.0
    steady = gaps[len(gaps) // 10:]  # drop the set-up phase (imports, data preparation)
    rows = [("whole run", gaps), ("training (after set-up)", steady)]
    print(f"\n{len(w.events)} events, {time.perf_counter() - t0:.1f} s, {len(ticks)} ticks of 10 ms\n")
    print("| phase | ticks | p50 gap (ms) | p99 gap (ms) | max gap (ms) |")
    print("|---|---:|---:|---:|---:|")
    for name, g in rows:
        print(f"| {name} | {len(g)} | {np.percentile(g, 50):.1f} | {np.percentile(g, 99):.1f} | {g.max():.1f} |")
    viewer.close()
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
