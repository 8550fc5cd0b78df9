"""fp32 against bf16 autocast on this CPU (issue 15): speed and accuracy, in one run.

Speed (median of ``--repeats`` timed calls after a warm-up, each precision in turn):

* (a) a training step of ``unet`` width 16, batch 8, 128x128, one channel (forward, BCE +
  Dice loss on float32 logits, backward, Adam step), channels-last as the engine runs it;
* (b) a ``Predictor`` prediction of a 240x240x16 volume cut from a real BraTS 2013 case
  (FLAIR + T1c; ``predict_array``, batch 8, every slice; the checkpoint trained for the
  accuracy part of the BraTS set, at the CPU recipe's input size);
* (c) one call of the learned click engine (the shipped starter model) on a BraTS slice with
  one click.

Accuracy, per benchmark set (a BraTS 2013 split, the LGG patients, a COCO export): a 2D U-Net
is trained briefly in fp32 with the product's engine (``--train-minutes`` each, CPU recipe),
then its validation cases are predicted in fp32 and in bf16; the table gives the Dice of the
bf16 masks against the fp32 masks and each against the ground truth (pooled over the cases).

Run by hand on a quiet machine (the timings are spoiled by other load; the load average is
printed and written)::

    python benchmarks/bench_precision.py                # full: ~15-25 min on 2 cores
    python benchmarks/bench_precision.py --quick        # smoke test, a minute: no results file
    python benchmarks/bench_precision.py --speed-only   # the speed rows with the shipped models,
                                                        # plus (d) a volume click and (e) its network

Writes ``benchmarks/RESULTS_precision.md`` (not in --quick mode unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from napari_tumorseg.precision import cpu_bf16_flags, cpu_description, prefer_channels_last, resolve

DATA = Path(os.environ.get("TUMORSEG_SHARED_DATA", REPO.parent / "shared" / "data"))
BRATS_CASE = DATA / "brats2013_deepmedic/validation/brats_2013_pat0003_1"
# The 2D click starter (single images); the volume one is (d)'s (engines.volume_starter_checkpoint).
STARTER = [REPO / "napari_tumorseg" / "resources" / "starter_click_unet.pt"]
# (name, training data, what the validation cases are)
SETS = [
    ("BraTS 2013 (FLAIR+T1c, 4 cases)", DATA / "brats2013_deepmedic"),
    ("LGG kaggle_3m (2 patients)", DATA / "lgg_kaggle3m"),
    ("COCO ravirawal (JPG)", DATA / "coco_ravirawal"),
]


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN builds its kernels on the first call
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = np.count_nonzero(a) + np.count_nonzero(b)
    return 1.0 if total == 0 else 2.0 * np.count_nonzero(a & b) / total


# ----------------------------------------------------------------------------- speed


def bench_train_step(width: int, batch: int, size: int, repeats: int) -> dict[str, float]:
    from napari_tumorseg.models import create_model

    out = {}
    for name in ("fp32", "bf16"):
        prec = resolve(name, "cpu")
        torch.manual_seed(0)
        model = create_model("unet", in_channels=1, out_channels=1, width=width).train()
        prefer_channels_last(model, "cpu", 2)  # as the training engine lays it out
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = torch.randn(batch, 1, size, size)
        y = (torch.rand(batch, 1, size, size) > 0.8).float()

        def step(model=model, opt=opt, prec=prec, x=x, y=y):
            opt.zero_grad(set_to_none=True)
            logits = prec.run(model, x)  # float32 out
            p = logits.sigmoid()
            loss = F.binary_cross_entropy_with_logits(logits, y) + 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
            loss.backward()
            opt.step()

        out[name] = _timed(step, repeats)
    return out


def bench_predict(ckpt: Path, n_slices: int, repeats: int) -> dict[str, float]:
    from napari_tumorseg.inference import Predictor, predict_array
    from napari_tumorseg.training.datasets import open_source

    ref = next(r for r in open_source(BRATS_CASE.parent.parent).refs if r.case_id in str(BRATS_CASE))
    image = ref.load().image
    z0 = max(0, image.shape[1] // 2 - n_slices // 2)
    # A 16-slice volume, every slice predicted (normalisation included, as a user's call).
    slab = np.ascontiguousarray(image[:, z0:z0 + n_slices])
    out = {}
    for name in ("fp32", "bf16"):
        predictor = Predictor.from_checkpoint(ckpt, device="cpu", precision=name)

        def call(p=predictor):
            p.forget_volume()  # each call a first call on the scan: normalisation included
            return predict_array(p, slab, batch_size=8, skip_empty=False, threads=torch.get_num_threads())
        out[name] = _timed(call, repeats)
    return out


def bench_clicks(repeats: int) -> dict[str, float]:
    from napari_tumorseg.interactive.learned import LearnedEngine
    from napari_tumorseg.interactive.prompts import Prompts
    from napari_tumorseg.interactive.simulate import deep_point
    from napari_tumorseg.io.nifti import read_nifti

    flair = read_nifti(BRATS_CASE / "Flair_subtrMeanDivStd.nii.gz")
    gt = np.asarray(read_nifti(BRATS_CASE / "OTMultiClass.nii.gz").data) > 0
    z = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(1)))
    image = np.asarray(flair.data, np.float32)[None, z:z + 1]
    p = deep_point(gt[z], (1.0, 1.0))
    prompts = Prompts(positive=[[0, p[0], p[1]]])
    out = {}
    for name in ("fp32", "bf16"):
        engine = LearnedEngine.from_checkpoint(STARTER[0])
        engine.precision = resolve(name, "cpu")
        out[name] = _timed(lambda e=engine: e.segment(image, flair.spacing, prompts), repeats)
    return out


VOLUME_CASE = DATA / "brats_multi_year/BraTS2021_00006"


def _volume_click_setup():
    from napari_tumorseg.interactive.prompts import Prompts
    from napari_tumorseg.interactive.simulate import deep_point
    from napari_tumorseg.io.nifti import read_nifti

    vols = [read_nifti(VOLUME_CASE / f"BraTS2021_00006_{s}.nii.gz") for s in ("flair", "t1", "t1ce", "t2")]
    image = np.stack([np.asarray(v.data, np.float32) for v in vols])
    gt = np.asarray(read_nifti(VOLUME_CASE / "BraTS2021_00006_seg.nii.gz").data) > 0
    spacing = vols[0].spacing
    z = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(1)))
    y, x = deep_point(gt[z], spacing[1:])
    return image, spacing, Prompts(positive=[[z, y, x]]), ["FLAIR", "T1", "T1c", "T2"]


def bench_volume_click(repeats: int) -> dict[str, float]:
    """(d) one click of the volume click engine, as the dock and the robot call it
    (``segment_with_prompts``, whole tumour, 240x240x155, four sequences)."""
    from napari_tumorseg.interactive.engines import load_learned, segment_with_prompts, volume_starter_checkpoint

    image, spacing, prompts, names = _volume_click_setup()
    out = {}
    for name in ("fp32", "bf16"):
        engine = load_learned(volume_starter_checkpoint())
        engine.precision = resolve(name, "cpu")
        out[name] = _timed(lambda e=engine: segment_with_prompts(e, image, spacing, prompts, target="whole",
                                                                 channel_names=names), repeats)
    return out


def bench_click_network(repeats: int) -> dict[str, float]:
    """(e) the volume click model's forward pass alone at the batch a click runs it with:
    two slices (the up and down fronts of propagation) at its 128x128 grid. The ceiling
    of (d)'s ratio, whatever the work around the network costs."""
    from napari_tumorseg.interactive.engines import load_learned, volume_starter_checkpoint

    engine = load_learned(volume_starter_checkpoint())
    first = next(m for m in engine.model.modules() if isinstance(m, torch.nn.Conv2d))
    # as the engine calls it: channels-last input, its autocast context, its forward (_net)
    x = torch.randn(2, first.in_channels, *engine._grid((240, 240))).contiguous(memory_format=torch.channels_last)
    out = {}
    for name in ("fp32", "bf16"):
        engine.precision = resolve(name, "cpu")

        def call():
            with torch.inference_mode(), engine.precision.autocast():
                engine._net(x)
        out[name] = _timed(call, repeats * 4)
    return out


def speed_only(args) -> None:
    """Speed rows alone, with the shipped models, appended to the results file."""
    from napari_tumorseg.inference.starter import starter_path

    repeats = args.repeats
    load = os.getloadavg()
    rows = [(f"(a) training step, unet width 16, batch 8, 128x128", bench_train_step(16, 8, 128, repeats)),
            ("(b) Predictor, a 240x240x16 BraTS 2013 volume (FLAIR + T1c), the shipped starter",
             bench_predict(starter_path(), 16, repeats)),
            ("(c) 2D click engine (starter_click_unet), one click on a 240x240 BraTS slice", bench_clicks(repeats)),
            ("(d) volume click engine, one click, whole tumour, 240x240x155, four sequences",
             bench_volume_click(repeats)),
            ("(e) its network alone, batch 2 (the two fronts), 128x128: the ceiling of (d)",
             bench_click_network(repeats))]
    end = os.getloadavg()
    lines = [f"## Speed rows, shipped models ({time.strftime('%Y-%m-%d %H:%M')}, `--speed-only`)", "",
             f"CPU: {cpu_description()}; {torch.get_num_threads()} threads; load average at start "
             f"{load[0]:.2f}, at end {end[0]:.2f}; median of {repeats} calls after a warm-up", "",
             "| what | fp32 s | bf16 s | fp32 / bf16 |", "|---|---:|---:|---:|"]
    for what, t in rows:
        lines.append(f"| {what} | {t['fp32']:.3f} | {t['bf16']:.3f} | {t['fp32'] / t['bf16']:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out) if args.out else REPO / "benchmarks" / "RESULTS_precision.md"
    with open(out, "a", encoding="utf-8") as fh:
        fh.write("\n" + text)
    print(f"appended to {out}")


# ----------------------------------------------------------------------------- accuracy


def train_checkpoint(data: Path, out: Path, minutes: float, quick: bool) -> Path:
    from napari_tumorseg.training import TrainConfig, train
    from napari_tumorseg.training.events import DoneEvent

    fields = {"model": "unet", "data": str(data), "out_dir": str(out), "recipe": "cpu", "precision": "fp32",
              "max_minutes": minutes, "seed": 0, "val_fraction": 0.5, "overwrite": True}
    if quick:
        fields.update(epochs=1, tiny=True, size=64, max_train_items=1, max_val_items=1, batch_size=2)
    last = None
    for last in train(TrainConfig.from_dict(fields)):
        pass
    if not isinstance(last, DoneEvent):
        raise SystemExit(f"training on {data} failed: {getattr(last, 'message', last)}")
    return Path(last.best_checkpoint or last.last_checkpoint)


def accuracy(ckpt: Path, data: Path, max_cases: int) -> dict[str, float]:
    from napari_tumorseg.inference import Predictor, predict_array
    from napari_tumorseg.models.checkpoint import load_checkpoint
    from napari_tumorseg.training.datasets import open_source

    _, ck = load_checkpoint(ckpt, build=False)
    val_ids = set(ck["extra"]["split"]["val"])
    refs = [r for r in open_source(data).refs if r.case_id in val_ids][:max_cases]
    preds = {n: Predictor.from_checkpoint(ckpt, device="cpu", precision=n) for n in ("fp32", "bf16")}
    masks = {"fp32": [], "bf16": [], "gt": []}
    for ref in refs:
        case = ref.load()
        masks["gt"].append((case.labels > 0).ravel())
        for name, predictor in preds.items():
            prob = predict_array(predictor, case.image, batch_size=8, threads=torch.get_num_threads())
            masks[name].append((prob > 0.5).ravel())
    cat = {k: np.concatenate(v) for k, v in masks.items()}
    return {"cases": len(refs), "bf16_vs_fp32": float(_dice(cat["bf16"], cat["fp32"])),
            "fp32_vs_gt": float(_dice(cat["fp32"], cat["gt"])), "bf16_vs_gt": float(_dice(cat["bf16"], cat["gt"]))}


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny sizes, no results file")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--train-minutes", type=float, default=4.0, help="training per benchmark set")
    ap.add_argument("--max-cases", type=int, default=40, help="validation cases (images) per set")
    ap.add_argument("--out", default=None, help="results file (default: benchmarks/RESULTS_precision.md)")
    ap.add_argument("--speed-only", action="store_true", dest="speed_only",
                    help="the speed rows alone, with the shipped models (no training); appends")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.speed_only:
        speed_only(args)
        return
    quick = args.quick
    repeats = 1 if quick else args.repeats

    load = os.getloadavg()
    head = [
        f"CPU: {cpu_description()}",
        (f"native bf16 flags: {', '.join(cpu_bf16_flags()) or 'none'}; precision auto here: "
         f"{resolve('auto', 'cpu').describe()}"),
        (f"torch {torch.__version__}, {torch.get_num_threads()} threads, Python {platform.python_version()}; "
         f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"),
    ]
    print("\n".join(head), flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="bench_precision_"))
    acc_rows = []
    ckpts = {}
    minutes = 0.2 if quick else args.train_minutes
    for name, data in SETS:
        print(f"training on {name} ({minutes:g} min, fp32)…", flush=True)
        ckpts[name] = train_checkpoint(data, tmp / name.split()[0], minutes, quick)
        acc = accuracy(ckpts[name], data, 1 if quick else args.max_cases)
        acc_rows.append((name, acc))
        print("  " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in acc.items()),
              flush=True)

    speed = []
    w, b, s = (4, 2, 64) if quick else (16, 8, 128)
    t = bench_train_step(w, b, s, repeats)
    speed.append((f"(a) training step, unet width {w}, batch {b}, {s}x{s}", t))
    print(speed[-1], flush=True)
    n = 2 if quick else 16
    t = bench_predict(ckpts[SETS[0][0]], n, repeats)
    speed.append((f"(b) Predictor, a 240x240x{n} BraTS 2013 volume (FLAIR + T1c)", t))
    print(speed[-1], flush=True)
    t = bench_clicks(repeats)
    speed.append(("(c) learned click engine (starter), one click on a 240x240 BraTS slice", t))
    print(speed[-1], flush=True)
    load_end = os.getloadavg()

    lines = ["# fp32 against bf16 autocast on the CPU", "",
             ("Measured by `benchmarks/bench_precision.py`"
              + (" in --quick mode (smoke sizes: not a result)" if quick else "") + "."), ""]
    lines += [f"- {h}" for h in head]
    lines += [f"- load average at the end: {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}", "",
              "## Speed (median seconds per call)", "",
              "| what | fp32 s | bf16 s | fp32 / bf16 |", "|---|---:|---:|---:|"]
    for what, t in speed:
        lines.append(f"| {what} | {t['fp32']:.3f} | {t['bf16']:.3f} | {t['fp32'] / t['bf16']:.2f}x |")
    lines += ["", "## Accuracy (one fp32-trained checkpoint per set, predicted in each precision)", "",
              (f"Training: `unet`, CPU recipe, {minutes:g} min per set, fp32; validation cases of "
               "its own split; Dice pooled over the cases (threshold 0.5)."), "",
              "| set | cases | Dice bf16 vs fp32 | Dice fp32 vs truth | Dice bf16 vs truth | difference |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, a in acc_rows:
        lines.append(f"| {name} | {a['cases']} | {a['bf16_vs_fp32']:.4f} | {a['fp32_vs_gt']:.4f} | "
                     f"{a['bf16_vs_gt']:.4f} | {a['bf16_vs_gt'] - a['fp32_vs_gt']:+.4f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = args.out or (None if quick else REPO / "benchmarks" / "RESULTS_precision.md")
    if out:
        Path(out).write_text(text, encoding="utf-8")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
