"""COCO -> TIFF masks: ours (pycocotools RLE) against seed 000's skimage.draw.polygon loop.

Run by hand from the repository root: ``python benchmarks/bench_coco.py [--repeat N]``.
Both sides read the same JSON, write one 0/255 uint8 TIFF per image into a fresh
folder and are timed end to end (JSON parse included) on every image of
coco_pkdarabi (train + valid) and coco_ravirawal (train + valid). The runs alternate
(ours, seed, ours, seed, ...) so a busy machine slows both alike; the table gives the
median. The seed's loop is written as in its public notebook: per image, a scan of
every annotation for that image id, ``skimage.draw.polygon`` per polygon, and
``tifffile.imwrite`` -- except that it writes one union mask per image (the notebook
writes one file per polygon and none for images without tumour), so both sides write
the same files. Masks are then compared: pixels that differ come from the two
rasterisers' edge rules (pycocotools is COCO's reference).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import skimage.draw
import tifffile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from napari_tumorseg.coco.to_masks import convert_coco_to_masks, write_mask  # noqa: E402

DATA = Path(os.environ.get("TUMORSEG_SHARED_DATA", REPO.parent / "shared" / "data"))
SETS = {
    "coco_pkdarabi": ["train", "valid"],
    "coco_ravirawal": ["train", "valid"],
}


def seed_loop(json_file: Path, out_dir: Path) -> int:
    """Seed 000's create_mask loop, one union mask per image."""
    with open(json_file) as f:
        data = json.load(f)
    images, annotations = data["images"], data["annotations"]
    os.makedirs(out_dir, exist_ok=True)
    for image_info in images:
        mask_np = np.zeros((image_info["height"], image_info["width"]), dtype=np.uint8)
        for ann in annotations:
            if ann["image_id"] == image_info["id"]:
                for seg in ann["segmentation"]:
                    rr, cc = skimage.draw.polygon(seg[1::2], seg[0::2], mask_np.shape)
                    mask_np[rr, cc] = 255
        stem = os.path.splitext(image_info["file_name"])[0]
        tifffile.imwrite(os.path.join(out_dir, stem + ".tif"), mask_np)
    return len(images)


def run_seed(name: str, splits: list[str], out: Path) -> int:
    return sum(seed_loop(DATA / name / s / "_annotations.coco.json", out / s) for s in splits)


def run_ours(name: str, out: Path, compression: str = "none", workers: int = 1) -> int:
    report = convert_coco_to_masks(DATA / name, out, compression=compression, workers=workers)
    assert not report.missing_files and not report.skipped_existing
    return len(report.written)


def run_floor(name: str, splits: list[str], out: Path) -> int:
    """Only the writes, as the converter does them: the same uncompressed TIFFs, all zeros,
    each written once into a fresh folder (the converter's staging folder), no rasterising."""
    n = 0
    for split in splits:
        data = json.loads((DATA / name / split / "_annotations.coco.json").read_text())
        (out / split).mkdir(parents=True, exist_ok=True)
        for im in data["images"]:
            zeros = np.zeros((im["height"], im["width"]), np.uint8)
            write_mask(out / split / (os.path.splitext(im["file_name"])[0] + ".tif"), zeros, atomic=False)
            n += 1
    return n


def run_raw_floor(name: str, splits: list[str], out: Path) -> int:
    """The mask bytes alone, one plain file each (no TIFF framing): creating and filling the
    files, what no TIFF writer can beat on this disk."""
    n = 0
    for split in splits:
        data = json.loads((DATA / name / split / "_annotations.coco.json").read_text())
        (out / split).mkdir(parents=True, exist_ok=True)
        for im in data["images"]:
            zeros = np.zeros((im["height"], im["width"]), np.uint8)
            with open(out / split / (os.path.splitext(im["file_name"])[0] + ".tif"), "wb") as fh:
                fh.write(zeros.data)
            n += 1
    return n


def compare(ours: Path, seed: Path) -> tuple[int, int, float]:
    """(files, files that differ, fraction of differing pixels over all masks)."""
    files = sorted(p.relative_to(ours) for p in ours.rglob("*.tif"))
    seed_files = sorted(p.relative_to(seed) for p in seed.rglob("*.tif"))
    assert files == seed_files, "the two methods wrote different file sets"
    n_diff, px_diff, px_all = 0, 0, 0
    for rel in files:
        a, b = tifffile.imread(ours / rel), tifffile.imread(seed / rel)
        d = int((a != b).sum())
        n_diff += d > 0
        px_diff += d
        px_all += a.size
    return len(files), n_diff, px_diff / px_all


VARIANTS = {  # column name -> run_ours keyword arguments
    "ours (default: uncompressed, 1 thread)": {},
    "ours, 2 threads": {"workers": 2},
    "ours, PackBits": {"compression": "packbits"},
    "ours, PackBits, 2 threads": {"compression": "packbits", "workers": 2},
}
# "floor" = run_floor: the converter's writes alone, what no rasteriser can beat;
# "raw floor" = run_raw_floor: the same pixel bytes in plain files (the disk's own cost).


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sides = ["seed", *VARIANTS, "floor", "raw floor"]
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="bench_coco_"))
    try:
        for name, splits in SETS.items():
            times: dict[str, list[float]] = {side: [] for side in sides}
            cpu: dict[str, list[float]] = {side: [] for side in sides}
            n = 0
            for r in range(args.repeat):
                for k, side in enumerate(sides):
                    out = tmp / f"{name}_{k}_{r}"
                    t0, c0 = time.perf_counter(), time.process_time()
                    if side == "seed":
                        n = run_seed(name, splits, out)
                    elif side == "floor":
                        run_floor(name, splits, out)
                    elif side == "raw floor":
                        run_raw_floor(name, splits, out)
                    else:
                        n = run_ours(name, out, **VARIANTS[side])
                    times[side].append(time.perf_counter() - t0)
                    cpu[side].append(time.process_time() - c0)
            diffs = [compare(tmp / f"{name}_{k}_0", tmp / f"{name}_0_0") for k in range(1, len(VARIANTS) + 1)]
            assert len({d for d in diffs}) == 1, "our variants wrote different masks"
            files, n_diff, frac = diffs[0]
            ips = {side: n / statistics.median(t) for side, t in times.items()}
            cpu_ips = {side: n / statistics.median(t) for side, t in cpu.items()}
            rows.append((name, n, ips, cpu_ips, n_diff, frac))
            shutil.rmtree(tmp)
            tmp.mkdir()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cols = [*VARIANTS, "floor", "raw floor"]
    for title, key in (("wall-clock", 2), ("CPU time of the process (user + system)", 3)):
        print(f"\nCOCO -> TIFF masks, images/s by {title}, median of {args.repeat} alternating runs; "
              "speed-up over seed 000 in brackets\n")
        print("| set | images | seed 000 loop | " + " | ".join(cols) + " | masks differing | pixels differing |")
        print("|---|---:|---:|" + "---:|" * len(cols) + "---:|---:|")
        for row in rows:
            name, n, ips, n_diff, frac = row[0], row[1], row[key], row[4], row[5]
            cells = [f"{ips[v]:.0f} ({ips[v] / ips['seed']:.1f}x)" for v in cols]
            print(f"| {name} (train+valid) | {n} | {ips['seed']:.0f} | " + " | ".join(cells) + f" | {n_diff} | {frac:.2e} |")

if __name__ == "__main__":
    main()
