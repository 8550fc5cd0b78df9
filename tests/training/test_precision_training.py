"""Training precision (issue 15): bf16 autocast where asked or where the CPU has it, fp32
otherwise; the loss in float32; the precision recorded in the checkpoint and kept on resume."""

from __future__ import annotations

import math

import pytest
import torch

from napari_tumorseg.models.checkpoint import load_checkpoint
from napari_tumorseg.training import TrainConfig, train
from napari_tumorseg.training.events import DoneEvent, StartEvent, StepEvent


def _cfg(shared_data, out, **kw):
    fields = {"model": "unet", "data": shared_data / "coco_ravirawal", "out_dir": str(out), "epochs": 1,
              "batch_size": 4, "size": 64, "model_config": {"width": 4}, "max_train_items": 4,
              "max_val_items": 2, "seed": 5, "recipe": "paper", "augmentation": False, "threads": 1,
              "hd95": False}
    return TrainConfig(**{**fields, **kw})


def _run(cfg):
    """All events of a run and the dtypes of every Conv2d output and loss input seen in it."""
    conv_dtypes = set()

    def hook(module, args, output):
        if isinstance(module, torch.nn.Conv2d) and isinstance(output, torch.Tensor):
            conv_dtypes.add(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        evs = list(train(cfg))
    finally:
        handle.remove()
    assert isinstance(evs[-1], DoneEvent), evs[-1]
    return evs, conv_dtypes


def _start(evs) -> StartEvent:
    return next(e for e in evs if isinstance(e, StartEvent))


def test_bf16_step_has_a_finite_loss_and_the_checkpoint_says_bf16(shared_data, tmp_path):
    evs, dtypes = _run(_cfg(shared_data, tmp_path, precision="bf16"))
    assert dtypes == {torch.bfloat16}  # every convolution ran in bf16
    losses = [e.loss for e in evs if isinstance(e, StepEvent)]
    assert losses and all(math.isfinite(v) for v in losses)
    assert _start(evs).config["precision"] == "bf16"
    _, ck = load_checkpoint(tmp_path / "last.pt", build=False)
    assert ck["extra"]["resolved"]["precision"] == "bf16"
    assert ck["extra"]["train_config"]["precision"] == "bf16"
    # The weights stay float32 (autocast casts on the fly): the checkpoint loads anywhere.
    assert all(v.dtype == torch.float32 for v in ck["state_dict"].values() if v.is_floating_point())
    assert math.isfinite(ck["history"][-1]["train_loss"])


@pytest.mark.parametrize("flag, dtype, name", [("0", torch.float32, "fp32"), ("1", torch.bfloat16, "bf16")])
def test_auto_follows_the_processor_and_really_runs_that_precision(shared_data, tmp_path, monkeypatch,
                                                                   flag, dtype, name):
    monkeypatch.setenv("TUMORSEG_CPU_BF16", flag)
    evs, dtypes = _run(_cfg(shared_data, tmp_path))  # precision "auto"
    assert dtypes == {dtype}
    assert _start(evs).config["precision"] == name


def test_a_resumed_run_keeps_its_precision(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("TUMORSEG_CPU_BF16", "0")  # auto would be fp32 on this "CPU"
    _run(_cfg(shared_data, tmp_path / "a", precision="bf16"))
    evs, dtypes = _run(_cfg(shared_data, tmp_path / "b", epochs=2, resume=str(tmp_path / "a" / "last.pt")))
    assert _start(evs).config["precision"] == "bf16" and dtypes == {torch.bfloat16}
    # Naming one on resume wins.
    evs, dtypes = _run(_cfg(shared_data, tmp_path / "c", epochs=2, precision="fp32",
                            resume=str(tmp_path / "a" / "last.pt")))
    assert _start(evs).config["precision"] == "fp32" and dtypes == {torch.float32}


def test_an_older_checkpoint_resumes_in_fp32(shared_data, tmp_path, monkeypatch):
    """Checkpoints from before the precision setting ran fp32 on the CPU (amp was CUDA-only):
    resuming them on a bf16 CPU stays fp32."""
    _run(_cfg(shared_data, tmp_path / "a", precision="fp32"))
    path = tmp_path / "a" / "last.pt"
    ck = torch.load(path, weights_only=True)
    for key in ("precision", "precision_reason"):
        ck["extra"]["resolved"].pop(key)
    ck["extra"]["train_config"].pop("precision")
    assert ck["extra"]["resolved"]["amp"] is False
    torch.save(ck, path)
    monkeypatch.setenv("TUMORSEG_CPU_BF16", "1")
    evs, dtypes = _run(_cfg(shared_data, tmp_path / "b", epochs=2, resume=str(path)))
    assert _start(evs).config["precision"] == "fp32" and dtypes == {torch.float32}


def test_the_older_amp_switch_still_means_fp32(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("TUMORSEG_CPU_BF16", "1")
    evs, dtypes = _run(_cfg(shared_data, tmp_path, amp=False))
    assert _start(evs).config["precision"] == "fp32" and dtypes == {torch.float32}


def test_a_bad_precision_ends_the_run_with_one_line(shared_data, tmp_path):
    evs = list(train(_cfg(shared_data, tmp_path, precision="fp8")))
    assert type(evs[-1]).__name__ == "ErrorEvent"
    assert "precision must be one of auto, fp32, bf16" in evs[-1].message and "\n" not in evs[-1].message


def test_a_2d_run_on_the_cpu_trains_channels_last_and_saves_plain_weights(shared_data, tmp_path):
    """NHWC is the CPU's faster layout (precision.prefer_channels_last); the checkpoint it
    writes still loads into a model built the usual way and gives the same output."""
    seen = []

    def hook(module, args, output):
        if isinstance(module, torch.nn.Conv2d) and module.training:
            seen.append(output.is_contiguous(memory_format=torch.channels_last))

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        evs = list(train(_cfg(shared_data, tmp_path, precision="fp32")))
    finally:
        handle.remove()
    assert isinstance(evs[-1], DoneEvent), evs[-1]
    assert seen and all(seen)
    model, ck = load_checkpoint(tmp_path / "best.pt")
    x = torch.randn(1, 1, 64, 64)
    model.eval()
    with torch.no_grad():
        flat = model(x)
        model.to(memory_format=torch.channels_last)
        assert torch.allclose(model(x), flat, atol=1e-5)
