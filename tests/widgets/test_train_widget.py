import time

import numpy as np
import pytest
from qtpy.QtCore import QTimer

from napari_tumorseg.widgets import train as train_dock
from tests.widgets.conftest import add_dock, save_screenshot

pytestmark = pytest.mark.gui


def _setup(viewer, tmp_path):
    viewer.open_sample("napari-tumorseg", "mri_phantom")
    widget = add_dock(viewer, "Train")
    widget.model_combo.setCurrentText("unet")
    widget.small.setChecked(True)
    widget.src_layers.setChecked(True)
    widget.image_layer.setCurrentText(next(l.name for l in viewer.layers if type(l).__name__ == "Image"))
    widget.labels_layer.setCurrentText(next(l.name for l in viewer.layers if type(l).__name__ == "Labels"))
    widget.out_picker.set_path(tmp_path / "run")
    widget.epochs.setValue(1)
    widget.batch.setValue(4)
    widget.size.setValue(64)
    widget.device.setCurrentText("cpu")
    return widget


def test_without_cuda_the_dock_starts_on_the_cpu_recipe(make_napari_viewer, monkeypatch):
    import torch

    from napari_tumorseg.models import get_recipe

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    viewer = make_napari_viewer()
    widget = add_dock(viewer, "Train")
    widget.model_combo.setCurrentText("unet")
    assert widget.recipe.currentData() == "cpu"
    cpu = get_recipe("unet", "cpu")
    assert widget.width.value() == cpu.model_config["width"] and widget.width.isEnabled()
    assert widget.size.value() == cpu.input_size[-1] and widget.batch.value() == cpu.preset.batch_size
    assert widget.loss.currentText() == cpu.preset.loss
    assert widget.scheduler.currentText() == cpu.preset.scheduler
    assert widget.max_minutes.value() == cpu.max_minutes
    # The paper's preset is one switch away.
    widget.recipe.setCurrentIndex(widget.recipe.findData("paper"))
    paper = get_recipe("unet", "paper")
    assert widget.width.value() == 64 and widget.size.value() == paper.input_size[-1]
    assert widget.epochs.value() == paper.preset.epochs and widget.batch.value() == paper.preset.batch_size
    assert float(widget.lr.text()) == pytest.approx(paper.preset.lr)
    assert widget.loss.currentText() == paper.preset.loss and widget.scheduler.currentText() == "step"
    assert widget.max_minutes.value() == 0  # shown as "no limit"
    # A model without a CPU recipe falls back to its paper preset; its fields follow.
    widget.model_combo.setCurrentText("segformer")
    from napari_tumorseg.models import get_info

    p = get_info("segformer").preset
    assert widget.recipe.currentData() == "paper"
    assert widget.epochs.value() == p.epochs and widget.batch.value() == p.batch_size
    assert float(widget.lr.text()) == pytest.approx(p.lr)
    assert not widget.width.isEnabled()


def test_dock_fields_reach_the_config(make_napari_viewer, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    viewer = make_napari_viewer()
    widget = _setup(viewer, tmp_path)
    widget.small.setChecked(False)
    widget.width.setValue(12)
    widget.loss.setCurrentText("dice")
    widget.scheduler.setCurrentText("cosine")
    widget.max_minutes.setValue(3)
    widget.overwrite.setChecked(True)
    cfg = widget.build_config()
    assert cfg.recipe == "cpu" and cfg.model_config == {"width": 12} and not cfg.tiny
    assert (cfg.loss, cfg.scheduler, cfg.max_minutes, cfg.overwrite) == ("dice", "cosine", 3.0, True)
    widget.small.setChecked(True)  # the tiny model brings its own width
    cfg = widget.build_config()
    assert cfg.tiny and cfg.model_config == {} and not widget.width.isEnabled()


def test_trains_one_epoch_on_open_layers_while_the_gui_runs(
    make_napari_viewer, qtbot, tmp_path, screenshot_dir
):
    viewer = make_napari_viewer(show=True)
    widget = _setup(viewer, tmp_path)
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    with qtbot.waitSignal(widget.epoch_done, timeout=300000):
        worker = widget.start()
        assert worker is not None
    qtbot.waitUntil(lambda: widget._worker is None, timeout=120000)
    timer.stop()
    assert widget.plot.epochs == [1]
    assert np.isfinite(widget.plot.train_loss[0])
    assert (tmp_path / "run" / "last.pt").exists() and (tmp_path / "run" / "history.csv").exists()
    # The GUI thread kept running its timer while training ran in the worker thread. How
    # fast it ticks is a speed figure: benchmarks/bench_gui_stall.py measures p99/max.
    assert len(gaps) > 20
    save_screenshot(viewer, screenshot_dir / "train_widget.png")


def test_cancel_then_resume(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from napari_tumorseg.training.events import EpochEvent

    viewer = make_napari_viewer()
    widget = _setup(viewer, tmp_path)
    widget.epochs.setValue(3)
    widget.show_prediction.setChecked(True)
    real_train = train_dock.train

    def train_waiting_after_epoch_1(config, cancel):
        # The worker pauses after the first epoch until Cancel is pressed, so the run cannot
        # finish its 3 epochs before the click lands (a finished run must fail this test).
        for ev in real_train(config, cancel=cancel):
            yield ev
            if isinstance(ev, EpochEvent) and ev.epoch == 0:
                deadline = time.monotonic() + 300
                while not cancel() and time.monotonic() < deadline:
                    time.sleep(0.01)

    monkeypatch.setattr(train_dock, "train", train_waiting_after_epoch_1)
    with qtbot.waitSignal(widget.epoch_done, timeout=300000):
        assert widget.start() is not None
    widget.cancel()
    qtbot.waitUntil(lambda: widget._worker is None, timeout=120000)
    monkeypatch.setattr(train_dock, "train", real_train)
    # The epoch's weights were run on the viewed slice and shown as an overlay.
    preview = viewer.layers["training preview"]
    z = int(viewer.dims.current_step[0])
    assert preview.data.shape == viewer.layers["PHANTOM FLAIR"].data.shape
    assert preview.data[z].max() > 0 and not np.delete(preview.data, z, axis=0).any()
    from napari_tumorseg.training.events import CancelledEvent, DoneEvent

    assert isinstance(widget.last_result, CancelledEvent)  # cancelled, not finished
    assert widget.last_result.epoch == 1 and widget.plot.epochs == [1]
    ckpt = widget.resume_picker.path()
    assert ckpt is not None and ckpt.exists()
    asked = []
    monkeypatch.setattr(train_dock, "ask_start_or_resume", lambda *a: asked.append(a) or "resume")
    assert widget.start() is not None
    qtbot.waitUntil(lambda: widget._worker is None, timeout=600000)
    assert len(asked) == 1
    assert isinstance(widget.last_result, DoneEvent)
    assert widget.plot.epochs[-1] == 3


def test_start_after_a_finished_run_asks_resume_or_anew(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from napari_tumorseg.training.events import DoneEvent

    viewer = make_napari_viewer()
    widget = _setup(viewer, tmp_path)
    answers, asked = [], []

    def ask(parent, folder, summary):
        asked.append(summary)
        return answers.pop(0)

    monkeypatch.setattr(train_dock, "ask_start_or_resume", ask)
    assert widget.start() is not None  # an empty folder: nothing to ask
    qtbot.waitUntil(lambda: widget._worker is None, timeout=300000)
    assert isinstance(widget.last_result, DoneEvent) and asked == []
    history = tmp_path / "run" / "history.csv"
    first = history.read_bytes()

    answers.append(None)  # the user closes the question: nothing starts, nothing is touched
    assert widget.start() is None
    assert asked == [" of 1 epoch(s)"] and history.read_bytes() == first

    answers.append("resume")  # resuming a run that has all its epochs needs more of them
    assert widget.start() is None and len(asked) == 2

    widget.epochs.setValue(2)
    answers.append("resume")
    assert widget.start() is not None
    qtbot.waitUntil(lambda: widget._worker is None, timeout=300000)
    assert isinstance(widget.last_result, DoneEvent) and widget.plot.epochs == [1, 2]

    answers.append("anew")  # starts over in the same folder: one epoch of history again
    widget.epochs.setValue(1)
    assert widget.start() is not None
    qtbot.waitUntil(lambda: widget._worker is None, timeout=300000)
    assert isinstance(widget.last_result, DoneEvent) and widget.plot.epochs == [1]
    assert len(history.read_text().strip().splitlines()) == 2  # header + one epoch
    assert not widget.overwrite.isChecked()  # the answer held for that start only
    assert len(asked) == 4


def test_slow_step_notice_then_eta_after_the_first_step(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from napari_tumorseg.training import engine
    from napari_tumorseg.training.events import StartEvent, StepEvent

    monkeypatch.setattr(engine, "SLOW_STEP_S", 0.0)  # every step counts as slow here
    viewer = make_napari_viewer()
    widget = _setup(viewer, tmp_path)
    widget.epochs.setValue(2)
    seen, notices = [], []
    monkeypatch.setattr(train_dock, "show_warning", lambda msg: notices.append((len(seen), msg)))
    handler = widget._on_event

    def on_event(item):
        seen.append((item[0], None))
        handler(item)
        seen[-1] = (item[0], widget.status.text())

    widget._on_event = on_event  # connected at start(): the wrapper records each status line
    assert widget.start() is not None
    qtbot.waitUntil(lambda: widget._worker is None, timeout=300000)
    kinds = [type(ev) for ev, _ in seen]
    assert kinds[0] is StartEvent and StepEvent in kinds
    # One notification, shown while the StartEvent was handled: before the first step.
    slow = [(i, m) for i, m in notices if m.startswith("each step will take about")]
    assert len(slow) == 1 and slow[0][0] == 1, notices
    first_step = next(text for ev, text in seen if isinstance(ev, StepEvent))
    assert "ETA" in first_step and "ETA ?" not in first_step, first_step


def test_missing_output_is_a_notification(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = add_dock(viewer, "Train")
    widget.out_picker.set_path("")
    assert widget.start() is None
