"""The moving average of the weights: its arithmetic, and what a run validates and keeps."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.models.checkpoint import load_checkpoint
from napari_tumorseg.training import TrainConfig, train
from napari_tumorseg.training.events import CancelledEvent, DoneEvent, EpochEvent, StepEvent
from napari_tumorseg.training.weight_average import WeightAverage


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))


def test_update_is_the_decayed_mean_and_copies_integer_buffers():
    net = _net()
    avg = WeightAverage(net, decay=0.9)
    start = {k: v.clone() for k, v in avg.module.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
        net[1].num_batches_tracked.fill_(7)
    d = avg.step_decay()
    assert d == pytest.approx(0.1)  # (1 + 0) / (10 + 0): the initial weights fade fast
    avg.update(net)
    live = net.state_dict()
    for name, value in avg.module.state_dict().items():
        if value.is_floating_point():
            expected = d * start[name] + (1 - d) * live[name]
            assert torch.allclose(value, expected), name
    assert int(avg.module[1].num_batches_tracked) == 7
    # Past the warm-up the configured decay holds.
    avg.steps = 10_000
    assert avg.step_decay() == pytest.approx(0.9)


def test_the_average_is_a_frozen_copy_and_its_state_round_trips():
    net = _net()
    avg = WeightAverage(net, decay=0.99)
    assert not any(p.requires_grad for p in avg.module.parameters())
    assert not avg.module.training
    with torch.no_grad():
        net[0].weight.mul_(3)
    for _ in range(5):
        avg.update(net)
    other = WeightAverage(_net(), decay=0.99)
    other.load_state_dict(avg.state_dict())
    assert other.steps == 5
    for (k, a), b in zip(avg.module.state_dict().items(), other.module.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError):
        WeightAverage(net, decay=1.0)


def test_config_refuses_a_decay_of_one(tmp_path):
    with pytest.raises(TumorSegError, match="weight_average must be in"):
        TrainConfig.from_dict({"model": "unet", "data": "x", "out_dir": str(tmp_path),
                               "weight_average": 1.0})


def _config(shared_data, out, **kw):
    return TrainConfig(model="unet", data=shared_data / "coco_ravirawal", out_dir=str(out),
                       epochs=2, batch_size=4, size=48, model_config={"width": 4},
                       max_train_items=8, max_val_items=2, augmentation=True, seed=3,
                       threads=1, weight_average=0.8, **kw)


def test_best_keeps_the_average_and_last_the_trained_weights(shared_data, tmp_path):
    cfg = _config(shared_data, tmp_path)
    cfg.epochs = 1  # best.pt and last.pt of the same moment
    evs = list(train(cfg))
    assert isinstance(evs[-1], DoneEvent), evs[-1]
    _, last = load_checkpoint(tmp_path / "last.pt", build=False)
    _, best = load_checkpoint(tmp_path / "best.pt", build=False)
    assert last["extra"]["resolved"]["weight_average"] == pytest.approx(0.8)
    saved = last["extra"]["weight_average"]
    assert saved["steps"] == last["extra"]["train_state"]["global_step"] == 2
    assert "weight_average" not in best["extra"]  # best.pt ships: no second copy of the weights
    # best.pt holds the averaged weights (what was validated), last.pt the trained ones.
    for key, value in saved["weights"].items():
        assert torch.equal(best["state_dict"][key], value), key
    floats = [k for k, v in saved["weights"].items() if v.is_floating_point()]
    assert any(not torch.equal(saved["weights"][k], last["state_dict"][k]) for k in floats)


def test_cancel_then_resume_continues_the_average(shared_data, tmp_path_factory):
    full_dir = tmp_path_factory.mktemp("full")
    assert isinstance(list(train(_config(shared_data, full_dir)))[-1], DoneEvent)
    out = tmp_path_factory.mktemp("cut")
    seen = {"steps": 0}
    cancel = lambda: seen["steps"] >= 3  # noqa: E731  mid-epoch 2
    for ev in train(_config(shared_data, out), cancel=cancel):
        if isinstance(ev, StepEvent):
            seen["steps"] += 1
        last = ev
    assert isinstance(last, CancelledEvent), last
    # Resumed without naming the decay: the run's own is kept.
    cfg = _config(shared_data, out, resume=str(out / "last.pt"))
    cfg.weight_average = None
    evs = list(train(cfg))
    assert isinstance(evs[-1], DoneEvent), evs[-1]
    assert [e.epoch for e in evs if isinstance(e, EpochEvent)] == [1]
    _, full = load_checkpoint(full_dir / "last.pt", build=False)
    _, resumed = load_checkpoint(out / "last.pt", build=False)
    a, b = full["extra"]["weight_average"], resumed["extra"]["weight_average"]
    assert a["steps"] == b["steps"]
    for key, value in a["weights"].items():
        assert torch.allclose(b["weights"][key].float(), value.float(), atol=1e-6), key
