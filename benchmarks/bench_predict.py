"""Whole-volume prediction: our batched ``predict_volume`` against a plain per-slice loop.

The volume is a real 155-slice 240x240 BraTS 2013 FLAIR (brats2013_deepmedic), the model
``unet`` at the paper's width (64-1024 features, 31 M parameters, random init: timing only)
at its paper input size 256x256, on the CPU, fp32. Both methods use the same model, the
same per-volume z-score and the same resize to 256 and back; they differ only in how the
slices reach the network:

* peer "per-slice loop": one slice per forward under ``torch.no_grad`` (NCHW tensors);
* ours "predict_volume": ``batch_size`` slices per forward under ``torch.inference_mode``,
  NHWC (channels-last) tensors, results streamed batch by batch;
* ours with ``skip_empty`` (the default): background-only slices are not sent to the model.

Run by hand: ``python benchmarks/bench_predict.py [--slices N] [--batch-size B] [--threads T]``.
Prints a markdown table; both maps are compared so a speed-up cannot hide a wrong result.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from napari_tumorseg.inference.predict import Predictor, predict_volume  # noqa: E402
from napari_tumorseg.io.readers import read_path  # noqa: E402
from napari_tumorseg.models import create_model  # noqa: E402
from napari_tumorseg.training.preprocessing import apply_preprocessing, restore_spatial  # noqa: E402

DATA = Path(os.environ.get("TUMORSEG_SHARED_DATA", REPO.parent / "shared" / "data"))
CASE = DATA / "brats2013_deepmedic/validation/brats_2013_pat0003_1/Flair_subtrMeanDivStd.nii.gz"


def per_slice_loop(model: torch.nn.Module, volume: np.ndarray, prep: dict, zs: list[int]) -> np.ndarray:
    """The peer: normalise the volume once, then resize, forward and resize back one slice at a time."""
    from napari_tumorseg.inference.predict import _normalized

    norm = _normalized(volume[None], prep)
    slice_prep = {**prep, "normalize": "none"}
    out = np.zeros(volume.shape, np.float32)
    with torch.no_grad():
        for z in zs:
            x = apply_preprocessing(norm[:, z:z + 1], slice_prep, layout="czyx")  # (1, 1, 256, 256)
            p = model(torch.from_numpy(x).permute(1, 0, 2, 3)).sigmoid()[:, 0].numpy()
            out[z] = np.clip(restore_spatial(p[None], volume.shape[1:], prep)[0, 0], 0, 1)
    return out


def ours(predictor: Predictor, volume: np.ndarray, zs: list[int], batch: int, skip_empty: bool):
    # Each call as a first call on the scan: the peer normalises every time too.
    predictor.forget_volume()
    events = 0
    for ev in predict_volume(predictor, volume, slices=zs, batch_size=batch, skip_empty=skip_empty,
                             threads=torch.get_num_threads()):
        events += ev.kind == "progress"
        last = ev
    return last.probabilities, events


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int, default=155, help="first N slices (default: all 155)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    vol = read_path(CASE)[0]
    data = vol.data
    zs = list(range(min(args.slices, data.shape[0])))
    torch.manual_seed(0)
    model = create_model("unet").eval()  # paper width, random init
    n_params = sum(p.numel() for p in model.parameters())
    predictor = Predictor(model, "unet", device="cpu")  # paper preprocessing: 256x256, z-score
    prep = dict(predictor.prep, normalize="zscore")
    predictor.prep = prep
    empty = sum(1 for z in zs if data[z].min() == data[z].max())

    load0 = os.getloadavg()[0]
    # Warm-up: oneDNN primitive creation for both layouts and both batch sizes.
    ours(predictor, data, list(range(60, 60 + args.batch_size)), args.batch_size, False)
    per_slice_loop(model, data, prep, [60])

    # The shared box's load drifts by minutes: the methods alternate over chunks of the
    # volume (every method still predicts every slice), so drift hits all of them alike.
    chunk = 2 * args.batch_size
    t_loop = t_ours = t_skip = 0.0
    ref = np.zeros(data.shape, np.float32)
    prob = np.zeros(data.shape, np.float32)
    prob2 = np.zeros(data.shape, np.float32)
    n_events = 0
    for start in range(0, len(zs), chunk):
        part = zs[start:start + chunk]
        model.to(memory_format=torch.contiguous_format)
        t = time.perf_counter()
        ref[part] = per_slice_loop(model, data, prep, part)[part]
        t_loop += time.perf_counter() - t
        model.to(memory_format=torch.channels_last)
        predictor.channels_last = True
        t = time.perf_counter()
        p, e = ours(predictor, data, part, args.batch_size, False)
        t_ours += time.perf_counter() - t
        prob[part], n_events = p[part], n_events + e
        t = time.perf_counter()
        p, _ = ours(predictor, data, part, args.batch_size, True)
        t_skip += time.perf_counter() - t
        prob2[part] = p[part]
    load1 = os.getloadavg()[0]
    kept = [z for z in zs if data[z].min() != data[z].max()]
    diff = float(np.abs(prob[zs] - ref[zs]).max())
    diff2 = float(np.abs(prob2[kept] - ref[kept]).max()) if kept else 0.0
    rows = [
        ("per-slice loop (peer): 1 slice/forward, NCHW, no_grad", len(zs), t_loop, 0.0),
        (f"predict_volume: batch {args.batch_size}, NHWC, inference_mode ({n_events} events)",
         len(zs), t_ours, diff),
        (f"predict_volume + skip_empty ({empty} background slices not run)", len(zs), t_skip, diff2),
    ]
    print(f"\nunet (paper width, {n_params / 1e6:.1f} M params), {len(zs)} slices (methods alternate per {chunk}-slice chunk) of {data.shape[1]}x{data.shape[2]} "
          f"-> 256x256, CPU fp32, {args.threads} torch threads, torch {torch.__version__}; "
          f"load average {load0:.1f} -> {load1:.1f} on {os.cpu_count()} cores\n")
    print("| method | slices | time (s) | slices/s | speed vs per-slice loop | max abs diff vs loop |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, n, sec, d in rows:
        print(f"| {name} | {n} | {sec:.1f} | {n / sec:.3f} | {t_loop / sec:.2f}x | {d:.1e} |")


if __name__ == "__main__":
    main()
