"""The CPU recipe, the time limit, cancel per step and the slow-step notice (CPU, tiny data)."""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from napari_tumorseg.models import create_model, default_recipe, get_info, get_recipe
from napari_tumorseg.precision import resolve
from napari_tumorseg.training import TrainConfig, train
from napari_tumorseg.training import engine
from napari_tumorseg.training.datasets import SegDataset, _Prepared
from napari_tumorseg.training.events import (
    CancelledEvent,
    DoneEvent,
    EpochEvent,
    StartEvent,
    StepEvent,
)


def _cfg(shared_data, tmp_path, **kw):
    base = dict(model="unet", data=shared_data / "coco_ravirawal", out_dir=str(tmp_path / "run"),
                max_train_items=2, max_val_items=1, epochs=1, threads=1, hd95=False)
    base.update(kw)
    return TrainConfig(**base)


def test_recipe_choice_follows_the_device():
    assert default_recipe("unet", "cpu") == "cpu"
    assert default_recipe("unet", "cuda") == "paper"
    assert default_recipe("segformer", "cpu") == "paper"  # no CPU recipe measured for it
    cpu, paper = get_recipe("unet", "cpu"), get_recipe("unet", "paper")
    assert cpu.model_config["width"] < 64 and cpu.input_size[-1] < paper.input_size[-1]
    assert cpu.max_minutes and paper.max_minutes is None


def test_without_cuda_the_cpu_recipe_is_used(shared_data, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    evs = list(train(_cfg(shared_data, tmp_path)))
    assert isinstance(evs[-1], DoneEvent), evs[-1]
    start = evs[0]
    assert isinstance(start, StartEvent)
    recipe = get_recipe("unet", "cpu")
    c = start.config
    assert c["recipe"] == "cpu" and c["max_minutes"] == recipe.max_minutes
    assert (c["batch_size"], c["lr"], c["loss"], c["scheduler"]) == (
        recipe.preset.batch_size, recipe.preset.lr, recipe.preset.loss, recipe.preset.scheduler)
    assert list(c["preprocessing"]["size"]) == list(recipe.input_size)
    from napari_tumorseg.models.checkpoint import load_checkpoint

    _, ck = load_checkpoint(tmp_path / "run" / "best.pt", build=False)
    assert ck["config"]["width"] == recipe.model_config["width"]
    assert ck["extra"]["resolved"]["recipe"] == "cpu"


def test_paper_recipe_is_one_switch_away(shared_data, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # The paper's values, except a width that keeps this test quick.
    evs = list(train(_cfg(shared_data, tmp_path, recipe="paper", model_config={"width": 4}, size=64)))
    assert isinstance(evs[-1], DoneEvent), evs[-1]
    c = evs[0].config
    p = get_recipe("unet", "paper").preset
    assert c["recipe"] == "paper" and c["max_minutes"] is None
    assert (c["batch_size"], c["lr"], c["loss"], c["scheduler"]) == (p.batch_size, p.lr, p.loss, p.scheduler)


def test_max_minutes_stops_after_the_epoch_that_passes_it(shared_data, tmp_path, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(engine, "_clock", lambda: now[0])
    cfg = _cfg(shared_data, tmp_path, epochs=10, max_minutes=0.5, size=32, model_config={"width": 4})
    epochs = []
    for ev in train(cfg):
        if isinstance(ev, EpochEvent):
            epochs.append(ev.epoch)
            now[0] += 20.0  # each epoch "takes" 20 s: 0, 20, 40 -> the third passes 30 s
        last = ev
    assert isinstance(last, DoneEvent), last
    assert epochs == [0, 1, 2]
    assert last.time_limit_reached and last.epochs_run == 3
    assert (tmp_path / "run" / "best.pt").exists() and last.best_checkpoint


def test_no_time_limit_reached_when_the_epochs_end_first(shared_data, tmp_path):
    cfg = _cfg(shared_data, tmp_path, epochs=1, max_minutes=60, size=32, model_config={"width": 4})
    last = list(train(cfg))[-1]
    assert isinstance(last, DoneEvent) and not last.time_limit_reached


def test_cancel_takes_effect_within_one_step(shared_data, tmp_path):
    asked = [False]
    cfg = _cfg(shared_data, tmp_path, max_train_items=8, batch_size=2, epochs=3, size=32,
               model_config={"width": 4})
    steps_after_cancel = 0
    for ev in train(cfg, cancel=lambda: asked[0]):
        if isinstance(ev, StepEvent):
            if asked[0]:
                steps_after_cancel += 1
            asked[0] = True  # the user clicks Cancel right after the first step
        last = ev
    assert steps_after_cancel <= 1
    assert isinstance(last, CancelledEvent) and (last.epoch, last.batch) == (0, 1)
    assert (tmp_path / "run" / "last.pt").exists()


def test_cancel_while_the_data_are_prepared(shared_data, tmp_path):
    evs = list(train(_cfg(shared_data, tmp_path, max_train_items=4), cancel=lambda: True))
    assert [type(e) for e in evs] == [CancelledEvent]
    assert evs[0].checkpoint is None and not (tmp_path / "run" / "last.pt").exists()


def test_a_slow_step_is_announced_before_it_starts(shared_data, tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "SLOW_STEP_S", 0.0)  # every step counts as slow here
    seen = []
    for ev in train(_cfg(shared_data, tmp_path, size=64, model_config={"width": 8})):
        seen.append(ev)
        if isinstance(ev, StepEvent):
            break
    start = seen[0]
    assert isinstance(start, StartEvent) and not any(isinstance(e, StepEvent) for e in seen[:-1])
    notes = [w for w in start.warnings if w.startswith("each step will take about")]
    assert len(notes) == 1 and "on this CPU" in notes[0]
    assert start.step_estimate_s > 0 and math.isfinite(start.step_estimate_s)


def test_step_estimate_is_close_to_a_real_step():
    case = _Prepared("c", "c", np.random.default_rng(0).normal(size=(1, 4, 128, 128)).astype(np.float32),
                     np.zeros((1, 4, 128, 128), np.float32), np.zeros((4, 128, 128), np.int64), (1, 1, 1))
    run = engine._Run.__new__(engine._Run)  # only what estimate_step_s reads
    run.device, run.batch_size, run.info = torch.device("cpu"), 8, get_info("unet")
    run.precision = resolve("fp32", "cpu")  # the step below runs in fp32
    run.train_ds = SegDataset([case])
    run.model = create_model("unet", 1, 1, width=16)
    estimate = run.estimate_step_s()
    opt = torch.optim.Adam(run.model.parameters())
    x, y = torch.randn(8, 1, 128, 128), torch.zeros(8, 1, 128, 128)

    def step():
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(run.model(x), y).backward()
        opt.step()

    step()
    t = time.perf_counter()
    step()
    real = time.perf_counter() - t
    # Generous: the machine is shared; the estimate only has to tell 1 s from a minute.
    assert real / 5 < estimate < real * 5, (estimate, real)


def _start(shared_data, tmp_path, data, **kw):
    """The StartEvent and best checkpoint of a one-epoch CPU-recipe run on ``data``."""
    from napari_tumorseg.models.checkpoint import load_checkpoint

    cfg = _cfg(shared_data, tmp_path, data=data, recipe="cpu", size=32,
               **{"model_config": {"width": 4}, **kw})
    evs = list(train(cfg))
    assert isinstance(evs[-1], DoneEvent), evs[-1]
    _, ck = load_checkpoint(tmp_path / "run" / "best.pt", build=False)
    return ck


def test_the_recipe_picks_norm_and_intensity_rule_from_the_data(shared_data, tmp_path):
    # Single 8-bit images from many scanners (Roboflow JPGs): instance norm, the 8-bit window.
    ck = _start(shared_data, tmp_path / "coco", shared_data / "coco_ravirawal")
    assert ck["config"]["norm"] == "instance" and ck["preprocessing"]["normalize"] == "window8"
    # 8-bit slices of patient volumes (LGG): BatchNorm, the 8-bit window.
    ck = _start(shared_data, tmp_path / "lgg", shared_data / "lgg_kaggle3m")
    assert ck["config"]["norm"] == "batch" and ck["preprocessing"]["normalize"] == "window8"
    # Scanner volumes (BraTS NIfTI): BatchNorm, the robust z-score.
    ck = _start(shared_data, tmp_path / "brats", shared_data / "brats2013_deepmedic")
    assert ck["config"]["norm"] == "batch" and ck["preprocessing"]["normalize"] == "robust"
    # A norm the user names wins.
    ck = _start(shared_data, tmp_path / "named", shared_data / "lgg_kaggle3m",
                model_config={"width": 4, "norm": "group"})
    assert ck["config"]["norm"] == "group"


def _lesion_contrast(ck) -> float:
    return ck["extra"]["resolved"]["augmentation"]["lesion_contrast_p"]


def test_lesion_contrast_is_chosen_from_the_data_unless_named(shared_data, tmp_path):
    # slices of volumes: on (what it was measured to help); single images: off (measured worse)
    assert _lesion_contrast(_start(shared_data, tmp_path / "lgg", shared_data / "lgg_kaggle3m")) == 0.5
    assert _lesion_contrast(_start(shared_data, tmp_path / "coco", shared_data / "coco_ravirawal")) == 0.0
    # an augmentation setting that names it wins
    ck = _start(shared_data, tmp_path / "named", shared_data / "coco_ravirawal",
                augmentation={"lesion_contrast_p": 0.2})
    assert _lesion_contrast(ck) == 0.2
