"""Cancel, then resume, equals the uninterrupted run (same seed, CPU): weights and losses."""

from __future__ import annotations

import pytest
import torch

from napari_tumorseg.models.checkpoint import load_checkpoint
from napari_tumorseg.training import TrainConfig, train
from napari_tumorseg.training.events import CancelledEvent, DoneEvent, EpochEvent, StepEvent

EPOCHS = 3


def config(shared_data, out, **kw):
    # Dropout and augmentation on, so the RNG state and the per-sample seeds both matter.
    return TrainConfig(model="unet", data=shared_data / "coco_ravirawal", out_dir=str(out),
                       epochs=EPOCHS, batch_size=4, size=48, model_config={"width": 4, "dropout": 0.2},
                       max_train_items=8, max_val_items=2, augmentation=True, seed=11,
                       scheduler="step", scheduler_params={"step_size": 1, "gamma": 0.5},
                       threads=1, **kw)


@pytest.fixture(scope="module")
def uninterrupted(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    evs = list(train(config(shared_data, out)))
    assert isinstance(evs[-1], DoneEvent), evs[-1]
    steps = [e.loss for e in evs if isinstance(e, StepEvent)]
    return load_checkpoint(out / "last.pt")[1], steps


@pytest.mark.parametrize("cancel_after", [3, 2, 0])
def test_cancel_then_resume_equals_uninterrupted(shared_data, tmp_path, uninterrupted, cancel_after):
    """3: mid-epoch 1; 2: after the last step of epoch 0, i.e. during its validation;
    0: before the first step."""
    full, full_steps = uninterrupted
    flag = {"n": 0, "started": False}
    first = []
    # Armed at StartEvent: a cancel while the data load ends the run before any state exists.
    cancel = lambda: flag["started"] and flag["n"] >= cancel_after  # noqa: E731
    for ev in train(config(shared_data, tmp_path), cancel=cancel):
        first.append(ev)
        flag["started"] = True
        if isinstance(ev, StepEvent):
            flag["n"] += 1
    cancelled = first[-1]
    assert isinstance(cancelled, CancelledEvent), cancelled
    assert cancelled.checkpoint == str(tmp_path / "last.pt")
    _, ck = load_checkpoint(tmp_path / "last.pt", build=False)
    st = ck["extra"]["train_state"]
    assert st["global_step"] == cancel_after
    assert (st["epoch"], st["batch"]) == (cancelled.epoch, cancelled.batch)

    second = list(train(config(shared_data, tmp_path, resume=str(tmp_path / "last.pt"))))
    assert isinstance(second[-1], DoneEvent), second[-1]
    steps = [e.loss for e in first + second if isinstance(e, StepEvent)]
    assert steps == pytest.approx(full_steps, abs=1e-6, rel=1e-6)
    epochs = [e for e in second if isinstance(e, EpochEvent)]
    assert epochs[0].epoch == cancelled.epoch  # resumed in the epoch it stopped in

    _, resumed = load_checkpoint(tmp_path / "last.pt", build=False)
    for key, value in full["state_dict"].items():
        assert torch.allclose(resumed["state_dict"][key].float(), value.float(), atol=1e-6), key
    for a, b in zip(resumed["history"], full["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-6)
        assert a["lr"] == pytest.approx(b["lr"])
    assert resumed["extra"]["optimizer"]["state"][0]["step"] == full["extra"]["optimizer"]["state"][0]["step"]


def test_resume_extends_a_finished_run(shared_data, tmp_path_factory, uninterrupted):
    full, _ = uninterrupted
    out = tmp_path_factory.mktemp("extend")
    list(train(config(shared_data, out)))
    cfg = config(shared_data, out, resume=str(out / "last.pt"))
    cfg.epochs = EPOCHS + 1
    evs = list(train(cfg))
    assert isinstance(evs[-1], DoneEvent)
    epochs = [e.epoch for e in evs if isinstance(e, EpochEvent)]
    assert epochs == [EPOCHS]
    _, ck = load_checkpoint(out / "last.pt", build=False)
    assert len(ck["history"]) == EPOCHS + 1
    assert ck["history"][0]["train_loss"] == pytest.approx(full["history"][0]["train_loss"])
