"""``tumorseg evaluate-clicks IMAGE GT``: the click robot on a real case.

A simulated user clicks at the centre of the largest error region (positive on a miss,
negative on a false positive; the first click at the deepest point of the ground truth) and
the command reports Dice after 1, 3, 5 and 10 clicks, NoC@80/85/90 and seconds per click.
The protocol and the NoC cap (a threshold never reached counts as ``--max-clicks``) are
those of :mod:`napari_tumorseg.interactive.robot`.

IMAGE is anything the readers open; when it holds several image volumes on one grid (a
BraTS case folder: FLAIR, T1, T1c, T2) they are the channels of one case, in the readers' order.
``--target`` says what is segmented (:mod:`napari_tumorseg.interactive.targets`): ``lesion``
(default) binarises GT (every value > 0); ``whole``, ``core`` and ``enhancing`` take the BraTS
region from GT's labels in the case's own edition convention (read from the names, or
``--convention``), and the classic engine reads the channels that target shows best.
IMAGE and GT must lie on the same grid; nothing is resampled. Clicks that lower the Dice by
more than 0.05 are reported as drops.

``--prior FILE`` measures correcting an existing segmentation, as the click dock corrects a
prediction or a loaded label map ("Correct it"): the clicks start from FILE's ``--target``
region (its labels > 0 for ``lesion``) — in FILE's own label convention, from the label names
it carries (this plugin's NIfTI and NRRD exports, 3D Slicer's segments), else its names, else
its values, or ``--prior-convention`` — and the report begins with the prior's own Dice.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from napari_tumorseg.cli._args import add_precision
from napari_tumorseg.errors import TumorSegError

REPORT_AT = (1, 3, 5, 10)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate-clicks",
        help="simulate a user clicking on a case: Dice per click, NoC@80/85/90, seconds per click",
    )
    p.add_argument("image", help="the scan: NIfTI, DICOM folder, TIFF, JPG/PNG, or a case folder")
    p.add_argument("gt", help="ground-truth mask or BraTS label map on the same grid")
    p.add_argument("--target", default="lesion", choices=("lesion", "whole", "core", "enhancing"),
                   help="what the clicks segment: lesion = every GT value > 0 (default); whole / core / "
                        "enhancing = the BraTS whole tumour / tumour core / enhancing tumour")
    p.add_argument("--convention", default=None, choices=("brats", "brats2023", "brats2012", "regionmap"),
                   help="GT's label convention for --target whole|core|enhancing; default: from the "
                        "case's names, else from its label values")
    p.add_argument("--engine", default=None, metavar="classic|CKPT",
                   help="'classic', or a click-guided checkpoint; default: the automatic choice, as "
                        "the dock's (the shipped volume click models for a volume holding the sequences "
                        "they read, the classic engine for other volumes, the 2D starter for an image)")
    p.add_argument("--prior", default=None, metavar="FILE",
                   help="a segmentation to correct (a `tumorseg predict` output, an earlier export, "
                        "any label map on IMAGE's grid): the clicks start from its --target region")
    p.add_argument("--prior-convention", default=None, choices=("brats", "brats2023", "brats2012", "regionmap"),
                   help="PRIOR's label convention; default: from its label names, else its file name, "
                        "else its values")
    p.add_argument("--max-clicks", type=int, default=10, metavar="N")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_precision(p)
    p.add_argument("--image-series", type=int, default=None, metavar="N",
                   help="which volume of IMAGE to use when it holds several (as in `tumorseg info`)")
    p.add_argument("--gt-series", type=int, default=None, metavar="N",
                   help="which volume of GT to use when it holds several")
    p.set_defaults(func=run)


def load_image(path: str, series: int | None):
    """(volume-like reference, (c, z, y, x) float32, channel names) of IMAGE."""
    from napari_tumorseg.io.readers import read_path

    volumes = [v for v in read_path(path, series) if v.kind == "image"]
    if not volumes:
        raise TumorSegError(f"IMAGE {path} holds no image (only masks)")
    ref = volumes[0]
    same = [v for v in volumes if v.spatial_shape == ref.spatial_shape
            and np.allclose(v.spacing, ref.spacing, rtol=1e-3, atol=1e-4)]
    if len(same) != len(volumes):
        raise TumorSegError(f"IMAGE {path} holds {len(volumes)} volumes on different grids; "
                            "pick one with --image-series N")
    chans, names = [], []
    for v in volumes:
        data = np.asarray(v.data, dtype=np.float32)
        if v.has_channels:
            chans.extend(data)
            names.extend(f"{v.name} {c}" for c in v.channel_names)
        else:
            chans.append(data)
            names.append(v.name)
    return ref, np.stack(chans), names


def evaluate_clicks(image_path: str, gt_path: str, engine: str | None = None, max_clicks: int = 10,
                    image_series: int | None = None, gt_series: int | None = None,
                    progress=None, precision: str | None = None, target: str = "lesion",
                    convention: str | None = None, prior_path: str | None = None,
                    prior_convention: str | None = None) -> dict:
    from napari_tumorseg.cli.evaluate import _load_mask, _same_grid
    from napari_tumorseg.interactive.engines import engine_from_name, engine_label
    from napari_tumorseg.interactive.robot import RobotProgress, iter_clicks
    from napari_tumorseg.interactive.targets import TARGETS, check_target, target_truth

    if max_clicks < 1:
        raise TumorSegError("--max-clicks must be at least 1")
    check_target(target)
    ref, image, names = load_image(image_path, image_series)
    gt_vol, gt = _load_mask(gt_path, gt_series, "GT")
    _same_grid(ref, gt_vol)
    gt = target_truth(gt, target, convention, names=(image_path, gt_path, gt_vol.name))
    if not gt.any():
        what = "" if target == "lesion" else f" of {TARGETS[target]}"
        raise TumorSegError(f"GT {gt_path} holds no voxel{what}: there is nothing to click on")
    prior = None if prior_path is None else _load_prior(prior_path, ref, target, prior_convention)
    choice = engine_from_name(engine, volume=gt.ndim == 3 and gt.shape[0] > 1)
    if hasattr(choice.engine, "precision"):  # a learned engine: --precision (auto: its own)
        from napari_tumorseg.precision import resolve

        choice.engine.precision = resolve(precision, "cpu")
    spacing = tuple(float(s) for s in ref.spacing)
    result = None
    for event in iter_clicks(choice.engine, image, spacing, gt, max_clicks=max_clicks, target=target,
                             channel_names=names, prior=prior):
        if isinstance(event, RobotProgress):
            if progress is not None:
                progress(event)
        else:
            result = event
    out = result.as_dict()
    out["engine"] = choice.engine.name
    out["engine_reason"] = choice.reason
    used = choice.engine
    if hasattr(used, "for_case"):  # a chain of engines: the one that answered this case
        used = used.for_case(names, int(image.shape[0]) if np.ndim(image) == 4 else 1)
        out["engine_reason"] = f"{choice.engine.name} ({choice.reason})"
    out["engine_used"] = engine_label(used)
    out.update({
        "image": str(image_path),
        "gt": str(gt_path),
        "gt_rule": "every GT value > 0 is tumour (BraTS labels: whole tumour)" if target == "lesion"
        else f"the {TARGETS[target]} region of GT's labels",
        "channels": names,
        "channels_read": _channels_read(used, names, target),
        "shape": list(gt.shape),
        "spacing_mm": list(spacing),
        "prior": None if prior_path is None else str(prior_path),
        "dice_at": {str(k): result.dice_at(k) for k in REPORT_AT if k <= max_clicks},
        "median_seconds_per_click": float(np.median(result.seconds_per_click))
        if result.seconds_per_click else None,
    })
    return out


def _load_prior(path: str, ref, target: str, convention: str | None):
    """PRIOR's ``target`` region on IMAGE's grid (bool), as the dock takes a loaded map's."""
    from napari_tumorseg.cli.evaluate import _load_mask
    from napari_tumorseg.interactive.targets import target_truth
    from napari_tumorseg.io.grid import check_same_grid

    vol, labels = _load_mask(path, None, "PRIOR")
    reason = check_same_grid(ref, vol)
    if reason:
        raise TumorSegError(f"PRIOR and IMAGE are on different grids: {reason}")
    meta = vol.metadata if isinstance(vol.metadata, dict) else {}
    return target_truth(labels, target, convention, names=(path, vol.name), label_names=meta.get("label_names"))


def _channels_read(engine, names, target) -> list[str]:
    chooser = getattr(engine, "channels_for", None)
    idx = chooser(target, names) if chooser is not None else None
    return list(names) if idx is None else [names[i] for i in idx if i is not None]  # None: a zero channel


def run(args) -> int:
    def show(event) -> None:
        sign = "+" if event.positive else "-"
        print(f"click {event.click:>2}/{event.max_clicks} {sign} at z,y,x "
              f"{','.join(map(str, event.point))}: Dice {event.dice:.4f} ({event.seconds:.2f} s)",
              flush=True)

    result = evaluate_clicks(args.image, args.gt, args.engine, args.max_clicks, args.image_series,
                             args.gt_series, progress=None if args.json else show,
                             precision=args.precision, target=args.target, convention=args.convention,
                             prior_path=args.prior, prior_convention=args.prior_convention)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"Engine: {result['engine_reason']}; this case: {result['engine_used']}")
    print(f"Target: {result['target']}; channels read: {', '.join(result['channels_read'])}; "
          f"GT: {result['gt_rule']}")
    if result.get("dice_prior") is not None:
        print(f"Prior: {result['prior']}; its Dice before any click: {result['dice_prior']:.4f}")
    print("Dice after " + ", ".join(f"{k} click{'s' if k != '1' else ''}: {d:.4f}"
                                    for k, d in result["dice_at"].items()))
    noc = result["noc"]
    reached = result["noc_reached"]
    print("NoC@80/85/90: " + " / ".join(f"{noc[k]}{'' if reached[k] else '*'}" for k in ("80", "85", "90"))
          + f"  (* never reached: capped at --max-clicks {result['max_clicks']})")
    if result["median_seconds_per_click"] is not None:
        print(f"Seconds per click: median {result['median_seconds_per_click']:.3f}, "
              f"max {max(result['seconds_per_click']):.3f}")
    drops = result["drops"]
    print(f"Drops (a click lowering Dice by > {result['drop_threshold']}): {len(drops)}"
          + "".join(f"; click {d['click']}: {d['dice_before']:.3f} -> {d['dice_after']:.3f}" for d in drops))
    return 0
