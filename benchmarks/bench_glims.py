"""GLIMS benchmark: size, FLOPs, CPU forward time, whole-volume sliding-window cost.

Run by hand from the repository root::

    python benchmarks/bench_glims.py [--threads 1] [--windows 3] [--skip-forward]

Peer: MONAI SwinUNETR (feature size 48, the paper's comparison) in the same run, as ratios.
FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per
multiply-add; conv, matmul, attention only) and, on a real forward, with fvcore's
``FlopCountAnalysis`` (1 per multiply-add, plus norms), the convention most papers use.

The sliding-window part segments the real BraTS 2023 case GLI-00001 (4 modalities,
240x240x155, z-scored inside the brain) with a randomly initialised paper-size GLIMS at
96^3 windows. Each overlap runs in a fresh subprocess, so ``ru_maxrss`` is that run's
peak RSS. On a 2-core CPU one 96^3 window takes about a minute, so only the first
``--windows`` windows are run and the full time is extrapolated from their mean (the
report says so); the output buffers are allocated before the first window, so the peak
RSS of the partial run is the peak of a full run.

Peak RSS pitfall: Linux carries the parent's high-water RSS into a child's ``ru_maxrss``
across fork/vfork + exec, so the children run first, while this process is small, and
each also reports ``VmHWM`` from /proc/self/status (the high-water mark of its own
address space only).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("TUMORSEG_SHARED_DATA", REPO.parent / "shared" / "data"))
CASE = DATA / "brats2023_gli_00001"
MODALITIES = ("t2f", "t1c", "t1n", "t2w")  # FLAIR, T1c, T1, T2
PAPER = {"params_m": 47.16, "gflops": 72.30, "swin_params_m": 61.98, "swin_gflops": 394.84}
ROI = 96


class _Stop(Exception):
    """Raised from the progress callback to end a timed partial run."""


def _glims(meta: bool = False):
    from napari_tumorseg.models.glims import build_glims

    if meta:
        with torch.device("meta"):
            return build_glims(4, 3).eval()
    torch.manual_seed(0)
    return build_glims(4, 3).eval()


def _swin_unetr():
    from monai.networks.nets import SwinUNETR

    return SwinUNETR(in_channels=4, out_channels=3, feature_size=48).eval()


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _torch_flops(model, device: str) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 4, ROI, ROI, ROI, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


def _fvcore_flops(model) -> float | None:
    try:
        from fvcore.nn import FlopCountAnalysis
    except ImportError:
        return None
    fa = FlopCountAnalysis(model, torch.zeros(1, 4, ROI, ROI, ROI))
    fa.unsupported_ops_warnings(False)
    fa.uncalled_modules_warnings(False)
    return float(fa.total())


def _forward_seconds(model, repeats: int = 2) -> float:
    x = torch.randn(1, 4, ROI, ROI, ROI)
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    return statistics.median(times[1:])  # the first call pays one-off allocations


def load_brats_volume() -> np.ndarray:
    """(4, 155, 240, 240) float32, each modality z-scored over its non-zero (brain) voxels."""
    import nibabel as nib

    chans = []
    for m in MODALITIES:
        arr = np.asarray(nib.load(CASE / f"BraTS-GLI-00001-000-{m}.nii.gz").dataobj, dtype=np.float32)
        arr = arr.transpose(2, 1, 0)  # nibabel (x, y, z) -> (z, y, x)
        brain = arr > 0
        arr[brain] = (arr[brain] - arr[brain].mean()) / (arr[brain].std() + 1e-8)
        chans.append(arr)
    vol = np.stack(chans)
    assert vol.shape == (4, 155, 240, 240), vol.shape
    return vol


def sliding_window_child(overlap: float, max_windows: int) -> dict:
    """One sliding-window run in this process; prints a JSON line."""
    from napari_tumorseg.inference.sliding_window import count_windows, sliding_window_predict

    vol = load_brats_volume()
    model = _glims()
    total = count_windows(vol.shape[1:], ROI, overlap)
    stamps: list[float] = []

    def progress(done: int, total_: int) -> None:
        stamps.append(time.perf_counter())
        if done >= max_windows and done < total_:
            raise _Stop

    start = time.perf_counter()
    complete = True
    try:
        probs = sliding_window_predict(model, vol, ROI, overlap=overlap, mode="gaussian", progress=progress)
        assert probs.shape == (3, 155, 240, 240) and 0.0 <= float(probs.min()) <= float(probs.max()) <= 1.0
    except _Stop:
        complete = False
    elapsed = time.perf_counter() - start
    per_window = [b - a for a, b in zip([start] + stamps[:-1], stamps)]
    mean_window = statistics.mean(per_window)
    return {
        "overlap": overlap,
        "total_windows": total,
        "windows_run": len(stamps),
        "complete": complete,
        "elapsed_s": elapsed,
        "per_window_s": mean_window,
        "estimated_total_s": elapsed if complete else mean_window * total,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "vm_hwm_gb": _vm_hwm_gb(),
    }


def _vm_hwm_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def _run_child(overlap: float, max_windows: int, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--child", str(overlap), "--windows", str(max_windows),
           "--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    ap.add_argument("--windows", type=int, default=3, help="windows to time per overlap before extrapolating")
    ap.add_argument("--overlaps", default="0.8,0.5")
    ap.add_argument("--skip-forward", action="store_true", help="skip the CPU forward timings and fvcore")
    ap.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.child is not None:
        print(json.dumps(sliding_window_child(args.child, args.windows)))
        return

    # Children first: see the peak-RSS pitfall in the module docstring.
    sw_rows = []
    for ov in (float(o) for o in args.overlaps.split(",") if o):
        r = _run_child(ov, args.windows, args.threads)
        how = "measured" if r["complete"] else f"extrapolated from {r['windows_run']} windows"
        sw_rows.append(
            (f"{ov:.1f}", str(r["total_windows"]), f"{r['per_window_s']:.1f}",
             f"{r['estimated_total_s'] / 60:.1f} ({how})", f"{r['peak_rss_gb']:.2f} / {r['vm_hwm_gb']:.2f}")
        )

    glims_meta = _glims(meta=True)
    swin = _swin_unetr()
    g_params, s_params = _params(glims_meta), _params(swin)
    g_flops = _torch_flops(glims_meta, "meta")
    s_flops = _torch_flops(swin.to("meta"), "meta")
    del swin

    rows = [
        ("Parameters (M)", f"{g_params / 1e6:.2f}", f"{s_params / 1e6:.2f}", f"{g_params / s_params:.2f}",
         f"paper {PAPER['params_m']} / {PAPER['swin_params_m']}"),
        ("GFLOPs, FlopCounterMode (2/MAC), 96^3", f"{g_flops / 1e9:.2f}", f"{s_flops / 1e9:.2f}",
         f"{g_flops / s_flops:.2f}", "conv + matmul + attention"),
        ("GMACs = FlopCounterMode / 2", f"{g_flops / 2e9:.2f}", f"{s_flops / 2e9:.2f}", f"{g_flops / s_flops:.2f}",
         f"paper {PAPER['gflops']} / {PAPER['swin_gflops']} G"),
    ]
    if not args.skip_forward:
        glims = _glims()
        fv = _fvcore_flops(glims)
        g_t = _forward_seconds(glims)
        del glims
        swin = _swin_unetr()
        fv_s = _fvcore_flops(swin)
        s_t = _forward_seconds(swin)
        del swin
        if fv is not None and fv_s is not None:
            rows.append(("GFLOPs, fvcore FlopCountAnalysis (1/MAC + norms)", f"{fv / 1e9:.2f}", f"{fv_s / 1e9:.2f}",
                         f"{fv / fv_s:.2f}", f"paper {PAPER['gflops']} / {PAPER['swin_gflops']}"))
        rows.append((f"CPU forward 1x4x96^3, s ({args.threads} thread(s))", f"{g_t:.1f}", f"{s_t:.1f}",
                     f"{g_t / s_t:.2f}", "eval, inference_mode, median of 2"))


    load = os.getloadavg()[0]
    print(f"\nGLIMS vs MONAI SwinUNETR (feature 48), torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"{args.threads} torch thread(s), load average {load:.1f}\n")
    print("| measure | GLIMS | SwinUNETR | ratio | note |\n|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print("\nSliding-window inference, BraTS 2023 GLI-00001 (4 x 240 x 240 x 155), 96^3 windows, "
          "Gaussian blending, output kept on CPU\n")
    print("| overlap | windows | s / window | total, min | peak RSS, GB: getrusage / VmHWM (target <= 8) |\n|---|---|---|---|---|")
    for r in sw_rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
