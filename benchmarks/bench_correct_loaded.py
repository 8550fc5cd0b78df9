"""Correcting a loaded segmentation with clicks, through ``tumorseg evaluate-clicks --prior``.

A radiologist opens a case with a segmentation made elsewhere (a colleague's, another tool's,
last year's) and corrects it with clicks ("Correct it" in the click dock). This measures that
with the robot on the four brats_multi_year cases, each target (whole tumour, core, enhancing),
starting from the case's own ground truth damaged in one of three ways a real segmentation is
wrong, written as a label map in the case's own BraTS convention and read back by the command
the user runs:

* ``half``: the upper half (by slice) of the target region is given to the next outer region
  (whole tumour: background; core: oedema; enhancing: core) - a region partly mislabelled;
* ``shrunk``: the target region eroded by 2 mm (voxels leaving it go to the next outer region) -
  a segmentation drawn inside the border;
* ``grown``: the target region dilated by 2 mm inside the next outer region (the whole tumour
  into the brain) - drawn outside the border.

Run by hand on a quiet machine (the numbers go to stdout as a markdown table):

    python benchmarks/bench_correct_loaded.py [--max-clicks 5] [--cases GLI-00000,2021_00006]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("TUMORSEG_SHARED_DATA", REPO.parent / "shared" / "data"))

from napari_tumorseg.brats import CONVENTIONS, convention_from_names, with_region  # noqa: E402
from napari_tumorseg.cli.evaluate_clicks import evaluate_clicks  # noqa: E402
from napari_tumorseg.export.nifti import write_nifti  # noqa: E402
from napari_tumorseg.interactive.targets import REGION_OF  # noqa: E402
from napari_tumorseg.io.nifti import read_nifti  # noqa: E402

DAMAGES = ("half", "shrunk", "grown")


def damaged(labels: np.ndarray, region: str, convention: str, how: str, spacing) -> np.ndarray:
    """``labels`` (the file's own voxel order and values) with ``region`` damaged ``how``."""
    inside = np.isin(labels, CONVENTIONS[convention][region])
    if how == "half":
        zs = np.nonzero(inside.any(axis=(1, 2)))[0]
        keep = inside.copy()
        keep[zs[len(zs) // 2]:] = False
    else:
        radius = 2.0  # mm
        depth = ndi.distance_transform_edt(inside if how == "shrunk" else ~inside, sampling=spacing)
        if how == "shrunk":
            keep = inside & (depth > radius)
        else:
            outer = {"WT": None, "TC": "WT", "ET": "TC"}[region]
            room = np.ones(labels.shape, bool) if outer is None else np.isin(labels, CONVENTIONS[convention][outer])
            keep = inside | (room & (depth <= radius))
    out, _ = with_region(labels, region, keep, convention)
    return out


def run(case: Path, target: str, how: str, max_clicks: int, tmp: Path) -> dict:
    seg = next(p for p in case.iterdir() if "seg" in p.name.lower())
    convention = convention_from_names(case.name, seg.name)
    vol = read_nifti(seg)  # the file's own voxel order: the prior is written as the file is
    labels = np.asarray(vol.data).astype(np.uint8)
    prior = tmp / f"{case.name}_{target}_{how}.nii.gz"
    write_nifti(damaged(labels, REGION_OF[target], convention, how, vol.spacing), prior, affine=vol.affine,
                intent="label", overwrite=True)
    t0 = time.perf_counter()
    out = evaluate_clicks(str(case), str(seg), max_clicks=max_clicks, target=target, prior_path=str(prior),
                          prior_convention=convention)
    out["wall_s"] = time.perf_counter() - t0
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-clicks", type=int, default=5)
    ap.add_argument("--cases", default=None, help="comma-separated parts of case names")
    ap.add_argument("--damage", default=",".join(DAMAGES))
    args = ap.parse_args()
    cases = sorted(p for p in (SHARED / "brats_multi_year").iterdir() if p.is_dir())
    if args.cases:
        cases = [c for c in cases if any(part in c.name for part in args.cases.split(","))]
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print("| damage | target | case | prior Dice | Dice per click | drops | median s |")
    print("|---|---|---|---:|---|---:|---:|")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for how in args.damage.split(","):
            for target in ("whole", "core", "enhancing"):
                for case in cases:
                    r = run(case, target, how, args.max_clicks, Path(tmp))
                    rows.append((how, target, r))
                    per = " ".join(f"{d:.2f}" for d in r["dice_per_click"])
                    print(f"| {how} | {target} | {case.name} | {r['dice_prior']:.3f} | {per} | {r['n_drops']} | "
                          f"{r['median_seconds_per_click']:.2f} |", flush=True)
    print()
    print("| damage | target | n | prior Dice | Dice@1 | Dice@3 | Dice@5 | drops |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for how in args.damage.split(","):
        for target in ("whole", "core", "enhancing"):
            sel = [r for h, t, r in rows if h == how and t == target]
            at = lambda k: np.mean([r["dice_per_click"][min(k, len(r["dice_per_click"])) - 1] for r in sel])  # noqa: E731
            print(f"| {how} | {target} | {len(sel)} | {np.mean([r['dice_prior'] for r in sel]):.3f} | {at(1):.3f} | "
                  f"{at(3):.3f} | {at(5):.3f} | {sum(r['n_drops'] for r in sel)} |")
    secs = [s for _, _, r in rows for s in r["seconds_per_click"]]
    print(f"\nseconds a click: median {np.median(secs):.2f}, 95th percentile {np.percentile(secs, 95):.2f} "
          f"(n = {len(secs)}); load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
