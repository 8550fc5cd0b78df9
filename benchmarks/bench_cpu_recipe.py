"""The Train dock's CPU recipe against MONAI BasicUNet in a plain loop, on a time budget.

    python benchmarks/bench_cpu_recipe.py --dataset lgg --method recipe --minutes 20
    python benchmarks/bench_cpu_recipe.py --dataset lgg --method peer --minutes 20
    python benchmarks/bench_cpu_recipe.py --report      # writes RESULTS_cpu_recipe.md

Every set in one sitting (the two methods of a set side by side, one set after another):

    for d in lgg coco brats; do
      for m in recipe peer; do python benchmarks/bench_cpu_recipe.py --dataset $d --method $m & done; wait
    done

Each run appends one JSON line (every epoch's wall time since the run started and its
validation Dice) to ``benchmarks/cpu_recipe_runs.jsonl``; ``--report`` turns the lines
into the table of the best validation Dice reached after 5, 10 and 20 minutes: what a user
would find in best.pt at that moment. The two methods of one data set are meant to run at
the same time, one torch thread each, so that they share whatever load the machine has.

* ``recipe``: the engine exactly as the Train dock drives it without CUDA:
  ``TrainConfig(model="unet", recipe="cpu")`` with the dock's defaults (one torch thread on
  this 2-core machine, validation fraction 0.2, HD95 computed every epoch), only the time
  limit raised to the budget.
* ``peer``: MONAI ``BasicUNet`` (its default features 32-32-64-128-256-32), trained by a
  plain PyTorch loop: Adam 1e-3, BCE-with-logits + MONAI ``DiceLoss(sigmoid=True)``, batch 8,
  shuffled every epoch, no augmentation. It trains on the very samples the recipe trains
  on (the engine prepares them: same split, same input size, same normalisation) and is
  validated by the engine's own validation code, so the Dice is the same per-patient /
  per-image mean.

Data: LGG (lgg_kaggle3m, split by patient: one patient trains, the other validates),
coco_ravirawal (its train folder trains, its valid folder validates) and BraTS
(brats2013_deepmedic: its train patients train, its validation patients validate; the
four sequences, whole tumour).
"""

from __future__ import annotations

import argparse
import json
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
RUNS = REPO / "benchmarks" / "cpu_recipe_runs.jsonl"
RESULTS = REPO / "benchmarks" / "RESULTS_cpu_recipe.md"
DATASETS = {"lgg": DATA / "lgg_kaggle3m", "coco": DATA / "coco_ravirawal",
            "brats": DATA / "brats2013_deepmedic"}
BUDGETS = (5, 10, 20)


def recipe_config(dataset: str, out_dir: str, minutes: float):
    """The Train dock's configuration on a CPU: the CPU recipe, the dock's defaults."""
    from napari_tumorseg.training.engine import TrainConfig

    return TrainConfig(model="unet", data=str(DATASETS[dataset]), out_dir=out_dir, recipe="cpu",
                       device="cpu", val_fraction=0.2, max_minutes=minutes, epochs=100000)


def run_recipe(dataset: str, minutes: float) -> dict:
    from napari_tumorseg.training.engine import train

    curve, info = [], {}
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        for ev in train(recipe_config(dataset, out, minutes)):
            name = type(ev).__name__
            if name == "StartEvent":
                info = {"n_train": ev.n_train, "n_val": ev.n_val, "config": ev.config,
                        "setup_s": round(time.perf_counter() - t0, 1)}
                print(f"recipe {dataset}: {ev.n_train} train / {ev.n_val} val samples", flush=True)
            elif name == "EpochEvent":
                curve.append((round(time.perf_counter() - t0, 1), float(ev.metrics.get("dice", 0.0))))
                print(f"  {curve[-1][0]:7.1f} s  epoch {ev.epoch + 1}  val Dice {curve[-1][1]:.3f}", flush=True)
            elif name == "ErrorEvent":
                raise SystemExit(ev.message)
    return {"curve": curve, **info}


def run_peer(dataset: str, minutes: float) -> dict:
    """BasicUNet by a plain loop on the engine's prepared samples, validated by the engine."""
    from monai.losses import DiceLoss
    from monai.networks.nets import BasicUNet

    from napari_tumorseg.training.datasets import SegDataset
    from napari_tumorseg.training.engine import _Run, default_threads

    torch.set_num_threads(default_threads())
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        cfg = recipe_config(dataset, out, minutes)
        run = _Run(cfg, None)
        run.setup()  # the same split, input size and normalisation as the recipe
        train_ds = SegDataset(run.train_cases, None, cfg.empty_slice_fraction, cfg.seed)
        torch.manual_seed(0)
        model = BasicUNet(spatial_dims=2, in_channels=run.in_channels, out_channels=1)
        run.model = model  # the engine's validate() runs this model with the engine's metrics
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        bce, dice = torch.nn.BCEWithLogitsLoss(), DiceLoss(sigmoid=True)
        loader = torch.utils.data.DataLoader(train_ds, batch_size=8, shuffle=True)
        info = {"n_train": len(train_ds), "n_val": len(run.val_ds),
                "params": sum(p.numel() for p in model.parameters()),
                "setup_s": round(time.perf_counter() - t0, 1)}
        print(f"peer {dataset}: {len(train_ds)} train / {len(run.val_ds)} val samples", flush=True)
        curve, epoch = [], 0
        while time.perf_counter() - t0 < 60 * minutes:
            model.train()
            for x, y in loader:
                opt.zero_grad()
                out_ = model(x)
                loss = bce(out_, y) + dice(out_, y)
                loss.backward()
                opt.step()
            _, metrics, _ = run.validate()
            epoch += 1
            curve.append((round(time.perf_counter() - t0, 1), float(metrics.get("dice", 0.0))))
            print(f"  {curve[-1][0]:7.1f} s  epoch {epoch}  val Dice {curve[-1][1]:.3f}", flush=True)
    return {"curve": curve, **info}


def best_by(curve: list, seconds: float) -> float | None:
    """Best validation Dice among the epochs finished within ``seconds`` (None: none)."""
    done = [d for t, d in curve if t <= seconds]
    return max(done) if done else None


def report(runs_file: Path = RUNS) -> str:
    runs = [json.loads(line) for line in runs_file.read_text().splitlines() if line.strip()]
    latest = {}
    for r in runs:  # the latest run of each (dataset, method)
        latest[(r["dataset"], r["method"])] = r
    lines = ["| data | budget | CPU recipe (dock) | MONAI BasicUNet, plain loop | difference |",
             "|---|---:|---:|---:|---:|"]
    for ds in DATASETS:
        a, b = latest.get((ds, "recipe")), latest.get((ds, "peer"))
        for m in BUDGETS:
            ra = best_by(a["curve"], 60 * m) if a and a["minutes"] >= m else None
            rb = best_by(b["curve"], 60 * m) if b and b["minutes"] >= m else None
            fa = "not run" if a is None or a["minutes"] < m else ("no epoch yet" if ra is None else f"{ra:.3f}")
            fb = "not run" if b is None or b["minutes"] < m else ("no epoch yet" if rb is None else f"{rb:.3f}")
            diff = f"{(ra or 0.0) - (rb or 0.0):+.3f}" if (ra is not None or rb is not None) and "not run" not in (fa, fb) else "-"
            lines.append(f"| {ds} | {m} min | {fa} | {fb} | {diff} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=sorted(DATASETS))
    ap.add_argument("--method", choices=("recipe", "peer"))
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--runs", type=Path, default=RUNS, help="the JSON-lines file of runs")
    args = ap.parse_args()
    if args.report:
        print(report(args.runs))
        return
    if not args.dataset or not args.method:
        ap.error("give --dataset and --method, or --report")
    t, load_before = time.time(), os.getloadavg()[0]
    res = (run_recipe if args.method == "recipe" else run_peer)(args.dataset, args.minutes)
    row = {"dataset": args.dataset, "method": args.method, "minutes": args.minutes,
           "machine": f"{platform.machine()} {os.cpu_count()} cores", "torch": torch.__version__,
           "load_before": load_before, "load_after": os.getloadavg()[0],
           "wall_s": round(time.time() - t, 1), **res}
    row["config"] = {k: v for k, v in (row.get("config") or {}).items() if k != "preprocessing"}
    with open(args.runs, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps({k: v for k, v in row.items() if k != "curve"}))


if __name__ == "__main__":
    main()
