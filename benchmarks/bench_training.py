"""Training benchmark (CPU): throughput beside MONAI BasicUNet and smp Unet, and real runs.

    python benchmarks/bench_training.py [--quick]

1. Training throughput (images/s, forward + backward + Adam step, fp32) at 256x256,
   batch 4, for unet, lintunet, hybrid_unet and segformer-b0 (paper widths, 1 input
   channel except hybrid_unet / segformer: 3), beside MONAI BasicUNet and
   segmentation_models_pytorch Unet (ResNet-34 encoder, random init) in the same process.
   Ratios are against smp Unet.
2. Real training with the engine, wall time included: ``unet`` on coco_ravirawal train ->
   valid Dice; ``unet`` on lgg_kaggle3m with one patient for training and the other for
   validation. On a 2-core CPU the paper width (64) is infeasible in the time budget, so
   these runs use width 16 at 128x128 (stated in the table).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("TUMORSEG_SHARED_DATA", REPO.parent / "shared" / "data"))


def throughput(model: torch.nn.Module, in_ch: int, out_fn, steps: int, batch: int = 4, size: int = 256):
    model.train()
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    x = torch.randn(batch, in_ch, size, size)
    y = (torch.rand(batch, 1, size, size) > 0.9).float()

    def step():
        opt.zero_grad()
        out = out_fn(model(x))
        if out.shape[2:] != y.shape[2:]:
            out = torch.nn.functional.interpolate(out, size=y.shape[2:], mode="bilinear")
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out[:, :1], y)
        loss.backward()
        opt.step()

    step()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t)


def bench_throughput(steps: int) -> list[tuple[str, float, int]]:
    from monai.networks.nets import BasicUNet
    import segmentation_models_pytorch as smp

    from napari_tumorseg.models import create_model

    first = lambda o: o[0] if isinstance(o, (list, tuple)) else o  # noqa: E731
    entries = [
        ("unet", lambda: create_model("unet", 1, 1), 1),
        ("lintunet", lambda: create_model("lintunet", 1, 1), 1),
        ("hybrid_unet", lambda: create_model("hybrid_unet", 3, 1), 3),
        ("segformer-b0", lambda: create_model("segformer", 3, 2, variant="b0"), 3),
        ("MONAI BasicUNet", lambda: BasicUNet(spatial_dims=2, in_channels=1, out_channels=1), 1),
        ("smp Unet (resnet34)", lambda: smp.Unet("resnet34", encoder_weights=None, in_channels=1, classes=1), 1),
    ]
    rows = []
    for name, build, in_ch in entries:
        torch.manual_seed(0)
        model = build()
        n_params = sum(p.numel() for p in model.parameters())
        ips = throughput(model, in_ch, first, steps)
        rows.append((name, ips, n_params))
        print(f"  {name}: {ips:.2f} img/s", flush=True)
    return rows


def real_run(data, out, **kw):
    from napari_tumorseg.training import TrainConfig, train
    from napari_tumorseg.training.events import DoneEvent, EpochEvent, StartEvent

    cfg = TrainConfig(model="unet", data=data, out_dir=str(out), threads=os.cpu_count(), seed=0, **kw)
    t = time.perf_counter()
    epochs, start, last = [], None, None
    for ev in train(cfg):
        if isinstance(ev, StartEvent):
            start = ev
        elif isinstance(ev, EpochEvent):
            epochs.append(ev)
            print(f"    epoch {ev.epoch + 1}: train {ev.train_loss:.4f} val {ev.val_loss:.4f} "
                  f"dice {ev.metrics.get('dice', float('nan')):.3f}", flush=True)
        last = ev
    if not isinstance(last, DoneEvent):
        raise RuntimeError(f"run failed: {last}")
    best = max(epochs, key=lambda e: e.metrics.get("dice", -1))
    return {"time_s": time.perf_counter() - t, "n_train": start.n_train, "n_val": start.n_val,
            "epochs": len(epochs), "best_dice": best.metrics["dice"], "best_epoch": best.epoch + 1,
            "best_hd95": best.metrics.get("hd95"), "final_train_dice": epochs[-1].metrics["train_dice"],
            "train_cases": start.train_cases, "val_cases": start.val_cases}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer steps / epochs")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    steps = 2 if args.quick else 4
    print(f"# training benchmark: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPU threads, torch {torch.__version__}\n", flush=True)
    print("throughput...", flush=True)
    rows = bench_throughput(steps)
    ref = next(r[1] for r in rows if r[0].startswith("smp"))
    lines = ["## Training throughput, CPU fp32, 256x256, batch 4 (forward + backward + Adam)", "",
             "| model | params (M) | images/s | vs smp Unet |", "|---|---:|---:|---:|"]
    for name, ips, n in rows:
        lines.append(f"| {name} | {n / 1e6:.2f} | {ips:.2f} | {ips / ref:.2f}x |")

    epochs = 2 if args.quick else 6
    with tempfile.TemporaryDirectory() as tmp:
        print("coco_ravirawal...", flush=True)
        coco = real_run(DATA / "coco_ravirawal", Path(tmp) / "coco", epochs=epochs, batch_size=8,
                        lr=1e-3, size=128, model_config={"width": 16}, max_train_items=96,
                        max_val_items=48, augmentation=True, scheduler="none")
        print("lgg_kaggle3m...", flush=True)
        lgg = real_run(DATA / "lgg_kaggle3m", Path(tmp) / "lgg", epochs=epochs * 2, batch_size=4,
                       lr=1e-3, size=128, model_config={"width": 16}, val_fraction=0.5,
                       empty_slice_fraction=1.0, loss="combo", loss_params={"alpha": 0.5},
                       scheduler="none")
    lines += ["", "## Real training runs (engine, CPU, unet width 16 at 128x128 -- paper width 64 "
              "is infeasible on this CPU in the time budget)", "",
              "| run | train / val samples | epochs | wall time (s) | best val Dice (epoch) | val HD95 (px/mm) | final train Dice |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for name, r in (("coco_ravirawal: 96 train images -> 48 valid images, BCE (seed 000)", coco),
                    (f"lgg_kaggle3m: train {r_ids(lgg['train_cases'])} -> val {r_ids(lgg['val_cases'])}, "
                     "Combo a=0.5 (seed 003)", lgg)):
        lines.append(f"| {name} | {r['n_train']} / {r['n_val']} | {r['epochs']} | {r['time_s']:.0f} | "
                     f"{r['best_dice']:.3f} ({r['best_epoch']}) | {r['best_hd95']:.1f} | "
                     f"{r['final_train_dice']:.3f} |")
    print("\n".join(lines))


def r_ids(ids) -> str:
    return ", ".join(ids)


if __name__ == "__main__":
    main()
