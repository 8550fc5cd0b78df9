"""The automatic BraTS model on case folders it was not trained on, through the user's command.

Each case folder (every sequence beside its segmentation) goes through
``tumorseg predict CKPT CASE -o OUT.nii.gz`` exactly as a user types it; the exported label
map (1 oedema, 2 core, 3 enhancing) is compared with the case's own segmentation read in its
edition's label convention (``brats.convention_from_names``): Dice of whole tumour (WT),
tumour core (TC) and enhancing tumour (ET), predicted and true volumes, and the command's
wall time (model load included).

Run by hand on a quiet machine:

    python benchmarks/bench_starter.py [--checkpoint starter] [--data FOLDER ...] [--threads 2]

``--checkpoint starter`` (the default) is the shipped model. Prints a markdown table and
appends it to benchmarks/RESULTS_starter.md with the load average and the CPU.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from napari_tumorseg.brats import convention_from_names, labels_to_regions  # noqa: E402
from napari_tumorseg.io.nifti import read_nifti  # noqa: E402
from napari_tumorseg.metrics import segmentation_metrics  # noqa: E402
from napari_tumorseg.precision import cpu_description  # noqa: E402

DATA = Path(os.environ.get("TUMORSEG_SHARED_DATA", REPO.parent / "shared" / "data"))
REGIONS = ("WT", "TC", "ET")


def case_folders(roots: list[Path]) -> list[Path]:
    """Folders holding a ``*seg*``/``*truth*``/``OTMultiClass`` NIfTI beside their scans."""
    found = []
    for root in roots:
        for seg in sorted(root.rglob("*.nii.gz")):
            n = seg.name.lower()
            if "seg" in n or "truth" in n or "otmulticlass" in n:
                found.append(seg.parent)
    return sorted(set(found))


def truth_of(case: Path) -> tuple[np.ndarray, str]:
    seg = next(p for p in sorted(case.glob("*.nii.gz"))
               if any(k in p.name.lower() for k in ("seg", "truth", "otmulticlass")))
    convention = convention_from_names(case.name, seg.name) or "brats"
    vol = read_nifti(seg)
    return labels_to_regions(np.asarray(vol.data).astype(np.int64), convention), convention


def run_case(ckpt: str, case: Path, threads: int, out_dir: Path, precision: str | None,
             keep_all: bool = False) -> dict:
    out = out_dir / f"{case.name}.nii.gz"
    cmd = [sys.executable, "-m", "napari_tumorseg.cli", "predict", ckpt, str(case), "-o", str(out),
           "--threads", str(threads), "--quiet", "--overwrite"]
    if precision:
        cmd += ["--precision", precision]
    if keep_all:
        cmd.append("--keep-all-components")
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        return {"case": case.name, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    pred = np.asarray(read_nifti(out).data).astype(np.int64)
    truth, convention = truth_of(case)
    pred_regions = np.stack([pred > 0, np.isin(pred, (2, 3)), pred == 3])
    row = {"case": case.name, "convention": convention, "seconds": seconds}
    for i, name in enumerate(REGIONS):
        row[f"dice_{name}"] = float(segmentation_metrics(pred_regions[i], truth[i], hd=False)["dice"])
        row[f"ml_{name}"] = float(pred_regions[i].sum()) / 1000.0  # 1 mm voxels in BraTS
        row[f"true_ml_{name}"] = float(truth[i].sum()) / 1000.0
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="starter")
    ap.add_argument("--data", action="append", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default=None, help="auto|fp32|bf16 (default: the CLI's)")
    ap.add_argument("--label", default="", help="a note for the results file (which run, what data)")
    ap.add_argument("--keep-all-components", action="store_true", dest="keep_all",
                    help="the model's map as it is (no oedema-without-core cleanup)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    roots = args.data or [DATA / "brats_multi_year"]
    cases = case_folders(roots)
    if not cases:
        print("no case folders with a segmentation under " + ", ".join(map(str, roots)), file=sys.stderr)
        return 1
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            rows.append(run_case(args.checkpoint, case, args.threads, Path(tmp), args.precision, args.keep_all))
            print(rows[-1], file=sys.stderr)
    ok = [r for r in rows if "error" not in r]
    cleanup = "--keep-all-components" if args.keep_all else "default cleanup (oedema without a core dropped)"
    lines = [f"### {time.strftime('%Y-%m-%d %H:%M')} — {args.checkpoint} {args.label}; {cleanup}".rstrip(),
             "", f"CPU: {cpu_description()}; threads {args.threads}; load average at start {load:.2f}, "
             f"at end {os.getloadavg()[0]:.2f}", "",
             "| case | convention | Dice WT | Dice TC | Dice ET | WT mL (true) | TC mL (true) | ET mL (true) | s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['case']} | error: {r['error']} |||||||")
            continue
        lines.append(
            f"| {r['case']} | {r['convention']} | {r['dice_WT']:.3f} | {r['dice_TC']:.3f} | {r['dice_ET']:.3f} | "
            f"{r['ml_WT']:.1f} ({r['true_ml_WT']:.1f}) | {r['ml_TC']:.1f} ({r['true_ml_TC']:.1f}) | "
            f"{r['ml_ET']:.1f} ({r['true_ml_ET']:.1f}) | {r['seconds']:.1f} |")
    if ok:
        means = {k: float(np.mean([r[k] for r in ok])) for k in ("dice_WT", "dice_TC", "dice_ET", "seconds")}
        lines.append(f"| **mean** | | **{means['dice_WT']:.3f}** | **{means['dice_TC']:.3f}** | "
                     f"**{means['dice_ET']:.3f}** | | | | {means['seconds']:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        results = REPO / "benchmarks" / "RESULTS_starter.md"
        head = "" if results.exists() else (
            "# The automatic BraTS starter on case folders it was not trained on\n\n"
            "Written by `benchmarks/bench_starter.py` (newest last).\n\n")
        with open(results, "a", encoding="utf-8") as fh:
            fh.write(head + text + "\n")
    return 0 if len(ok) == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
