"""torchrun with 2 CPU processes (gloo, DistributedDataParallel) runs one epoch."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_cpu_processes_one_epoch(shared_data, tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("model_config: {width: 4}\nmax_train_items: 4\nmax_val_items: 2\naugmentation: false\n")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(_free_port()), "-m", "napari_tumorseg.cli", "train",
           "--model", "unet", "--data", str(shared_data / "coco_ravirawal"), "--out", str(out),
           "--epochs", "1", "--batch-size", "1", "--size", "32", "--device", "cpu",
           "--threads", "1", "--config", str(cfg)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [l for l in proc.stdout.splitlines() if l.startswith("epoch ")]
    assert len(lines) == 1  # rank 0 alone prints
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "history.csv", "last.pt"]
    import torch

    ck = torch.load(out / "last.pt", weights_only=True)
    resolved = ck["extra"]["resolved"]
    assert resolved["world_size"] == 2
    # 4 images over 2 ranks at batch 1: 2 optimiser steps per rank.
    assert ck["extra"]["train_state"]["global_step"] == 2
    assert len(list(csv.DictReader(open(out / "history.csv", newline="")))) == 1
