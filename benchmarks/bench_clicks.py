"""The click robot on every case of shared/data with a ground truth, for each click engine.

    nice -n 10 python benchmarks/bench_clicks.py [--engines classic,starter,auto0]
        [--target lesion|whole|core|enhancing] [--max-clicks 10] [--coco-images 30]
        [--sequences FLAIR,T1c] [--from-prediction | --prior-from starter] [--out benchmarks/RESULTS_clicks.md] [--smoke]

``--target`` (default ``lesion``, every label > 0): ``whole`` / ``core`` / ``enhancing`` run
the BraTS cases only (brats_multi_year with its four sequences, brats2013_deepmedic FLAIR +
T1c, BraTS 2012 HG0015 with its four), their truth the region in each edition's convention,
and the engines get the target as the dock gives it (the classic engine reads the channels
:mod:`napari_tumorseg.interactive.targets` names). Reported: Dice@1/3/5/10, NoC@80/85/90,
drops (a click lowering Dice by > 0.05, after the never-worse rule), seconds per click
(median and 95th percentile). ``--smoke``: the first case of each group, 2 clicks, 2 COCO
images - a check that it runs, not a measurement.

Cases: BRAINIX FLAIR vs its ROI series; the two LGG patients (FLAIR = channel 1 of the RGB
TIFFs, slices stacked by number by the readers); the four BraTS 2013 cases, whole tumour
(labels > 0) on FLAIR, and on FLAIR + T1c as two channels; BraTS 2012 HG0015 FLAIR vs
truth > 0; the first ``--coco-images`` images (by id) of coco_ravirawal valid that have a
tumour (2D).

Engines: ``classic`` (:class:`ClassicEngine`); ``starter`` (the shipped starter click model,
:func:`starter_checkpoint`; skipped with a note when none ships); ``auto0``: the starter
model with no click at all (its automatic segmentation, Dice at 0 clicks only).

The robot is :mod:`napari_tumorseg.interactive.robot` (largest error region's centre, NoC
capped at ``--max-clicks``). Seconds per click are wall-clock on whatever else the machine is
running; the load average is written beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("TUMORSEG_SHARED_DATA", REPO.parent / "shared" / "data"))

from napari_tumorseg.interactive.prompts import Prompts  # noqa: E402
from napari_tumorseg.interactive.robot import dice, simulate_clicks  # noqa: E402
from napari_tumorseg.io.readers import read_path  # noqa: E402


def _one(path, kind="image"):
    vols = [v for v in read_path(path) if v.kind == kind]
    return vols[0]


def brats_cases(target):
    """(group, name, image, spacing, gt, channel names) of the BraTS cases for ``target``."""
    from napari_tumorseg.cli.evaluate_clicks import load_image
    from napari_tumorseg.interactive.targets import target_truth

    for case in sorted((SHARED / "brats_multi_year").glob("*")):
        seg = next(f for f in case.iterdir() if "seg" in f.name.lower())
        ref, image, names = load_image(str(case), None)
        gt = target_truth(read_path(seg)[0].data, target, names=[case.name, seg.name])
        yield f"BraTS multi-year {target}", case.name, image, ref.spacing, gt, names
    for case in sorted((SHARED / "brats2013_deepmedic").glob("*/brats_2013_pat*")):
        ref, image, names = load_image(str(case), None)
        gt = target_truth(read_path(case / "OTMultiClass.nii.gz")[0].data, target, names=[case.name])
        yield f"BraTS 2013 {target} FLAIR+T1c", case.name.replace("brats_2013_", ""), image, ref.spacing, gt, names
    d = SHARED / "brats2012_hg0015"
    vols = [_one(d / f"BRATS_HG0015_{s}.nii.gz") for s in ("FLAIR", "T1", "T1C", "T2")]
    gt = target_truth(read_path(d / "BRATS_HG0015_truth.nii.gz")[0].data, target, convention="brats2012")
    yield (f"BraTS 2012 HG0015 {target}", "hg0015", np.stack([v.data for v in vols]).astype(np.float32),
           vols[0].spacing, gt, [v.name for v in vols])


def cases_3d():
    """(group, name, image (c,z,y,x) float32, spacing, gt bool)."""
    img = _one(SHARED / "dicom_brainix" / "FLAIR")
    roi = _one(SHARED / "dicom_brainix" / "ROI", "labels")
    yield "BRAINIX", "brainix", img.data[None].astype(np.float32), img.spacing, roi.data > 0
    for k, folder in enumerate(sorted((SHARED / "lgg_kaggle3m").glob("TCGA_*")), start=1):
        vols = read_path(folder)
        im = next(v for v in vols if v.kind == "image")
        gt = next(v for v in vols if v.kind == "labels")
        # Anonymous case number: the folder names carry TCGA patient IDs.
        yield "LGG FLAIR", f"lgg{k}", im.data[1:2].astype(np.float32), im.spacing, gt.data > 0
    brats = sorted((SHARED / "brats2013_deepmedic").glob("*/brats_2013_pat*"))
    for variant in ("FLAIR", "FLAIR+T1c"):
        for case in brats:
            vols = {v.name: v for v in read_path(case)}
            chans = [vols["Flair_subtrMeanDivStd"].data]
            if variant != "FLAIR":
                chans.append(vols["T1c_subtrMeanDivStd"].data)
            yield (f"BraTS 2013 WT {variant}", case.name.replace("brats_2013_", ""),
                   np.stack(chans).astype(np.float32), vols["Flair_subtrMeanDivStd"].spacing,
                   vols["OTMultiClass"].data > 0)
    d = SHARED / "brats2012_hg0015"
    img = _one(d / "BRATS_HG0015_FLAIR.nii.gz")
    gt = read_path(d / "BRATS_HG0015_truth.nii.gz")[0]
    yield "BraTS 2012 HG0015", "hg0015", img.data[None].astype(np.float32), img.spacing, gt.data > 0


def brats_lesion():
    """brats_multi_year, every sequence, every label > 0 (the lesion target)."""
    for group, name, image, spacing, gt, _ in brats_cases("lesion"):
        if group.startswith("BraTS multi-year"):
            yield group, name, image, spacing, gt


def cases_2d(n: int):
    from napari_tumorseg.coco.dataset import load_coco
    from napari_tumorseg.coco.to_masks import render_coco_image

    cs = load_coco(SHARED / "coco_ravirawal" / "valid")
    taken = 0
    for image_id in sorted(cs.images):
        if taken >= n:
            break
        if not cs.anns_by_image.get(image_id):
            continue
        pixels, mask, _ = render_coco_image(cs, image_id)
        if not mask.any():
            continue
        grey = pixels.astype(np.float32)
        if grey.ndim == 3:
            grey = grey[..., :3].mean(axis=-1)
        taken += 1
        yield "coco_ravirawal valid (2D)", str(image_id), grey[None, None], (1.0, 1.0, 1.0), mask[None] > 0


def engines(names):
    from napari_tumorseg.interactive.classic import ClassicEngine
    from napari_tumorseg.interactive.engines import load_learned, starter_checkpoint

    out, notes = {}, []
    for name in names:
        if name == "classic":
            out[name] = ClassicEngine()
        elif name in ("starter", "auto0"):
            ckpt = starter_checkpoint()
            if ckpt is None:
                notes.append(f"{name}: no starter click model ships (napari_tumorseg/resources/starter_click*.pt); column not run")
                continue
            out[name] = load_learned(ckpt)
        else:
            t0 = time.perf_counter()
            out[name] = load_learned(name)
            notes.append(f"{Path(name).name}: model load {time.perf_counter() - t0:.2f} s")
    return out, notes


_PREDICTED: dict = {}


def predicted_prior(ckpt: str, case: str, target: str, shape) -> np.ndarray | None:
    """The target's region in ``tumorseg predict CKPT CASE`` (the Predict dock's automatic
    prediction, cleanup included), as the click dock refines it: a region map's WT / TC / ET
    (``lesion``: its WT), a one-object map's labels > 0. None when CASE is not a folder of
    brats_multi_year (the prediction needs the case's files)."""
    import subprocess
    import tempfile

    from napari_tumorseg.interactive.targets import REGION_OF, region_mask

    folder = SHARED / "brats_multi_year" / case
    if not folder.is_dir():
        return None
    if (ckpt, case) not in _PREDICTED:
        out = Path(tempfile.mkdtemp()) / f"{case}.nii.gz"
        cmd = [sys.executable, "-m", "napari_tumorseg.cli", "predict", ckpt, str(folder), "-o", str(out),
               "--quiet", "--overwrite"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"tumorseg predict {ckpt} {case}: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
        # read as the case and its truth are (read_path: the display's slice order)
        _PREDICTED[(ckpt, case)] = np.asarray(read_path(out)[0].data).astype(np.uint8)
    labels = _PREDICTED[(ckpt, case)].reshape(shape)
    if labels.max() > 1:  # a region map (the starter): the target's own region
        return region_mask(labels, REGION_OF.get(target, "WT"))
    return labels > 0


def run_case(engine_name, engine, image, spacing, gt, max_clicks, target="lesion", names=None,
             from_prediction=False, prior_from=None, case=None):
    if engine_name == "auto0":
        t0 = time.perf_counter()
        mask = engine.segment(image, spacing, Prompts())
        return {"dice0": dice(mask, gt), "seconds": [time.perf_counter() - t0]}
    prior = None
    if prior_from:
        prior = predicted_prior(prior_from, case, target, gt.shape)
        if prior is None:
            return None
    elif from_prediction:
        # A prediction for the clicks to correct (the dock's refine path): this engine's answer
        # to one click at the truth's deepest point, made by a second copy of the engine so the
        # robot's engine starts with no memory of it.
        from napari_tumorseg.interactive.engines import segment_with_prompts
        from napari_tumorseg.interactive.robot import deepest_point

        other = engines([engine_name])[0][engine_name]
        prior = segment_with_prompts(other, image, spacing, Prompts(positive=[deepest_point(gt, spacing)]),
                                     target=target, channel_names=names)
    r = simulate_clicks(engine, image, spacing, gt, max_clicks=max_clicks, target=target,
                        channel_names=names, prior=prior)
    d = r.as_dict()
    d["dice_at"] = {k: r.dice_at(k) for k in (1, 3, 5, 10) if k <= max_clicks}
    return d


def summarise(rows, max_clicks):
    """One table row per (engine, group): means over the group's cases."""
    groups = {}
    for r in rows:
        groups.setdefault((r["engine"], r["group"]), []).append(r)
    lines = [("| engine | cases | n | Dice@1 | Dice@3 | Dice@5 | Dice@10 | NoC@80 | NoC@85 | NoC@90 | not reached 85 "
              "| drops | median s/click | p95 s/click |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (eng, group), rs in groups.items():
        if eng == "auto0":
            lines.append(f"| {eng} | {group} | {len(rs)} | Dice@0 = {np.mean([r['dice0'] for r in rs]):.3f} | | | | | | | | | "
                         f"{np.median([s for r in rs for s in r['seconds']]):.2f} | |")
            continue
        def m(k):
            return np.mean([r["dice_at"][k] for r in rs]) if k <= max_clicks else float("nan")
        noc = {t: np.mean([r["noc"][t] for r in rs]) for t in ("80", "85", "90")}
        miss = sum(not r["noc_reached"]["85"] for r in rs)
        all_secs = [s for r in rs for s in r["seconds_per_click"]]
        drops = sum(r["n_drops"] for r in rs)
        lines.append(f"| {eng} | {group} | {len(rs)} | {m(1):.3f} | {m(3):.3f} | {m(5):.3f} | {m(10):.3f} | "
                     f"{noc['80']:.1f} | {noc['85']:.1f} | {noc['90']:.1f} | {miss}/{len(rs)} | {drops} | "
                     f"{np.median(all_secs):.2f} | {np.percentile(all_secs, 95):.2f} |")
    return "\n".join(lines)


def per_case_table(rows):
    lines = [("| engine | group | case | Dice per click (1..N) | NoC@80/85/90 | drops (click: before -> after) "
              "| median / max s |"),
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["engine"] == "auto0":
            lines.append(f"| auto0 | {r['group']} | {r['case']} | Dice@0 {r['dice0']:.3f} | | | {r['seconds'][0]:.2f} |")
            continue
        dpc = " ".join(f"{d:.2f}" for d in r["dice_per_click"])
        noc = "/".join(f"{r['noc'][t]}{'' if r['noc_reached'][t] else '*'}" for t in ("80", "85", "90"))
        s = r["seconds_per_click"]
        drops = ", ".join(f"{d['click']}: {d['dice_before']:.2f} -> {d['dice_after']:.2f}" for d in r["drops"]) or "0"
        lines.append(f"| {r['engine']} | {r['group']} | {r['case']} | {dpc} | {noc} | {drops} | "
                     f"{np.median(s):.2f} / {max(s):.2f} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default="classic,starter,auto0")
    ap.add_argument("--max-clicks", type=int, default=10)
    ap.add_argument("--coco-images", type=int, default=30)
    ap.add_argument("--only", default=None, help="run the groups whose name contains this")
    ap.add_argument("--cases", default=None,
                    help="run the cases whose name contains one of these (comma-separated): a held-out split")
    ap.add_argument("--json", default=None, help="also write every row here")
    ap.add_argument("--out", default=None, help="write the markdown tables here")
    ap.add_argument("--target", default="lesion", choices=("lesion", "whole", "core", "enhancing"))
    ap.add_argument("--sequences", default=None, metavar="SEQ,SEQ",
                    help="BraTS targets: give the engines only these sequences of each case (e.g. "
                         "FLAIR: a case that lacks the others), matched by name")
    ap.add_argument("--from-prediction", action="store_true",
                    help="the robot corrects a prediction (the dock's refine path): each engine's answer "
                         "to one click at the truth's deepest point, as a prior")
    ap.add_argument("--prior-from", default=None, metavar="CKPT",
                    help="the robot corrects `tumorseg predict CKPT CASE` (e.g. starter: the Predict dock's "
                         "automatic map), the target's region of it; brats_multi_year cases only")
    ap.add_argument("--smoke", action="store_true",
                    help="first case of each group, 2 clicks, 2 COCO images: does it run (no timing)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.max_clicks, args.coco_images = min(args.max_clicks, 2), min(args.coco_images, 2)
    engs, notes = engines(args.engines.split(","))
    rows = []
    load0 = os.getloadavg()
    started = time.time()
    if args.target == "lesion":
        all_cases = ((*c, None) for c in (*cases_3d(), *brats_lesion(), *cases_2d(args.coco_images)))
    else:
        all_cases = brats_cases(args.target)
    seen = set()
    for group, name, image, spacing, gt, names in all_cases:
        if args.only and args.only not in group:
            continue
        if args.cases and not any(c in name for c in args.cases.split(",")):
            continue
        if args.smoke and group in seen:
            continue
        seen.add(group)
        if not gt.any():
            print(f"{group} {name}: no {args.target} voxel; skipped", flush=True)
            continue
        if args.sequences and names:
            from napari_tumorseg.channels import channel_indices

            wanted = [q.strip() for q in args.sequences.split(",") if q.strip()]
            keep = [i for i in channel_indices(list(names), wanted, name, "zeros") if i is not None]
            image, names = image[keep], [names[i] for i in keep]
            group = f"{group} ({'+'.join(wanted)} only)"
        for eng_name, engine in engs.items():
            r = run_case(eng_name, engine, image, spacing, gt, args.max_clicks, args.target, names,
                         from_prediction=args.from_prediction, prior_from=args.prior_from, case=name)
            if r is None:
                print(f"{group} {name}: no prediction to start from (not a brats_multi_year folder); skipped",
                      flush=True)
                continue
            r.update(engine=eng_name, group=group, case=name, dims="2D" if gt.shape[0] == 1 else "3D",
                     shape=list(gt.shape))
            rows.append(r)
            brief = (f"Dice@0 {r['dice0']:.3f}" if eng_name == "auto0" else
                     (f"[prior {r['dice_prior']:.2f}] " if r.get("dice_prior") is not None else "")
                     + " ".join(f"{d:.2f}" for d in r["dice_per_click"]))
            print(f"{eng_name:8s} {group:28s} {name:10s} {brief}", flush=True)
        # Tables after every case, so a long run cut short still leaves its numbers.
        _write(rows, args, notes, load0, started)


def _write(rows, args, notes, load0, started):
    load1 = os.getloadavg()
    secs = {dims: [s for r in rows if r["dims"] == dims and r["engine"] == "classic"
                   for s in r.get("seconds_per_click", [])] for dims in ("2D", "3D")}
    priors = [r["dice_prior"] for r in rows if r.get("dice_prior") is not None]
    source = (f"`tumorseg predict {args.prior_from}` (the target's region of it" if args.prior_from
              else "a prediction (each engine's one-click answer as the prior")
    text = [
        f"Target: {args.target}" + (" (SMOKE RUN: not a measurement)" if args.smoke else "")
        + (f" - correcting {source}; mean prior Dice {np.mean(priors):.3f})" if priors else ""), "",
        summarise(rows, args.max_clicks), "",
        "Median seconds per click, classic engine: "
        + ", ".join(f"{dims} {np.median(v):.2f} s (95th percentile {np.percentile(v, 95):.2f} s, n = {len(v)})"
                    for dims, v in secs.items() if v),
        f"Load average (1 min) at start / end: {load0[0]:.1f} / {load1[0]:.1f} on {os.cpu_count()} cores; "
        f"run took {(time.time() - started) / 60:.1f} min.",
        *(f"Note: {n}" for n in notes), "",
        "Per case (* = threshold never reached, NoC capped at max clicks):", "",
        per_case_table(rows),
    ]
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=float))
    if args.out:
        Path(args.out).write_text("\n".join(text) + "\n")
    return text


if __name__ == "__main__":
    main()
    print("done")
