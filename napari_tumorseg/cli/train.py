"""``tumorseg train``: fine-tune a model of the zoo; one line per epoch.

Writes OUT/last.pt, OUT/best.pt and OUT/history.csv. Ctrl-C saves OUT/last.pt at the
current step (resume with ``--resume OUT/last.pt``). Under ``torchrun`` every process
trains on its shard and rank 0 alone prints and writes (see training.distributed).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys

from napari_tumorseg.cli._args import add_precision, fraction, non_negative_int, positive_float, positive_int
from napari_tumorseg.errors import TumorSegError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train or fine-tune a model (writes last.pt, best.pt, history.csv)")
    p.add_argument("--model", help="model name (see `tumorseg models`)")
    p.add_argument("--data", action="append", metavar="PATH",
                   help="training data: COCO export, image+mask folders, LGG, NIfTI/DICOM cases, class folders; "
                        "repeat --data (or give A,B) to train on several sources at once, split by patient")
    p.add_argument("--out", help="output folder")
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--batch-size", type=positive_int, dest="batch_size")
    p.add_argument("--lr", type=positive_float)
    p.add_argument("--size", type=positive_int, help="2D input size (pixels) or 3D patch edge")
    p.add_argument("--device", help="auto (default), cuda, cpu or mps")
    p.add_argument("--resume", metavar="CKPT", help="continue from a last.pt")
    p.add_argument("--config", metavar="FILE", help="YAML/JSON file of training options (flags win)")
    p.add_argument("--loss", help="bce, dice, combo, bce_dice, dice_ce or ce (default: the recipe's)")
    p.add_argument("--recipe", choices=("cpu", "paper"),
                   help="cpu: measured to learn in minutes on a CPU (the default without CUDA, for "
                        "models that have one); paper: the paper's preset")
    p.add_argument("--width", type=int, help="base feature width (unet, lintunet; the paper's is 64)")
    p.add_argument("--scheduler", help="none, step, cosine or poly (default: the recipe's)")
    p.add_argument("--max-minutes", type=float, dest="max_minutes", metavar="M",
                   help="stop after the epoch that passes M minutes (best.pt is kept)")
    p.add_argument("--seed", type=int)
    p.add_argument("--val-fraction", type=fraction, dest="val_fraction", help="share of cases for validation, in [0, 1)")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch (default: all cores)")
    add_precision(p)
    p.add_argument("--num-workers", type=non_negative_int, dest="num_workers")
    p.add_argument("--no-augment", action="store_true", help="switch augmentation off")
    p.add_argument("--tiny", action="store_true", help="the model's tiny width (smoke tests)")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier run in OUT")
    p.add_argument("--interactive", action="store_true",
                   help="click-guided model: prompt channels and simulated clicks during training")
    p.add_argument("--channels", metavar="SEQ,SEQ",
                   help="the MR sequences the model reads, e.g. FLAIR,T1,T1c,T2; a case lacking one "
                        "gets zeros there (default: the sequences every case holds)")
    p.add_argument("--regions", action="store_true",
                   help="BraTS whole tumour, core and enhancing as three outputs (segmentation models; "
                        "default: the model's own output)")
    p.add_argument("--pretrained", metavar="CKPT",
                   help="start from these weights: one of our checkpoints of the same model (its "
                        "sequences placed by name, a new one at zero weight) or a bare state dict")
    p.add_argument("--click-radius", type=float, dest="click_radius", metavar="MM",
                   help="--interactive: radius of a click in mm (default 5)")
    p.set_defaults(func=run)


def _data(values: list[str] | None):
    """One --data as given (a string), several as a list (datasets.data_paths reads both)."""
    if not values:
        return None
    return values[0] if len(values) == 1 else list(values)


def _config(args):
    from napari_tumorseg.training.engine import TrainConfig

    flags = {
        "model": args.model, "data": _data(args.data), "out_dir": args.out, "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": args.lr, "size": args.size, "device": args.device,
        "resume": args.resume, "loss": args.loss, "seed": args.seed,
        "val_fraction": args.val_fraction, "threads": args.threads, "num_workers": args.num_workers,
        "recipe": args.recipe, "scheduler": args.scheduler, "max_minutes": args.max_minutes,
        "precision": args.precision, "pretrained": args.pretrained,
    }
    if args.no_augment:
        flags["augmentation"] = False
    if args.tiny:
        flags["tiny"] = True
    if args.overwrite:
        flags["overwrite"] = True
    if args.regions:
        flags["output"] = "regions"
    if args.channels:
        flags["channels"] = [c.strip() for c in args.channels.split(",") if c.strip()]
    if args.interactive or args.click_radius is not None:
        flags["interactive"] = True
    if args.click_radius is not None:
        flags["click_encoding"] = {"radius_mm": args.click_radius}
    if args.config:
        return TrainConfig.from_file(args.config, **flags)
    return TrainConfig.from_dict({k: v for k, v in flags.items() if v is not None})


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4f}"


def run(args) -> int:
    from napari_tumorseg.training import distributed
    from napari_tumorseg.training.engine import recipe_summary, train

    cfg = _config(args)
    if args.width is not None:
        if args.width < 1:
            raise TumorSegError(f"--width must be at least 1, got {args.width}")
        cfg.model_config = {**(cfg.model_config or {}), "width": args.width}
    if cfg.threads is None:
        cfg.threads = os.cpu_count() or 1  # no GUI to leave a core for
    ctx = distributed.init_from_env(cfg.device)
    main = ctx.rank == 0
    stop = {"asked": False}

    def on_sigint(signum, frame):
        if stop["asked"]:
            raise KeyboardInterrupt
        stop["asked"] = True
        if main:
            print("stopping at the next step (Ctrl-C again to abort)...", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_sigint) if ctx.world_size == 1 else None
    try:
        for ev in train(cfg, cancel=lambda: stop["asked"]):
            name = type(ev).__name__
            if not main:
                if name == "ErrorEvent":
                    raise TumorSegError(ev.message)
                continue
            if name == "StartEvent":
                for w in ev.warnings:
                    print(f"warning: {w}", file=sys.stderr)
                limit = ev.config.get("max_minutes")
                print(f"training {ev.model} on {ev.device} in {ev.config.get('precision')} "
                      f"({recipe_summary(ev.config)}): "
                      f"{ev.n_train} training / {ev.n_val} validation samples, epochs "
                      f"{ev.start_epoch + 1}-{ev.epochs}"
                      + (f" or {limit:g} min, whichever comes first" if limit else ""), flush=True)
                if ev.config.get("warm_start"):
                    print(ev.config["warm_start"], flush=True)
            elif name == "EpochEvent":
                m = ev.metrics
                key = "accuracy" if "accuracy" in m else "dice"
                print(f"epoch {ev.epoch + 1}  train_loss {_fmt(ev.train_loss)}  "
                      f"val_loss {_fmt(ev.val_loss)}  val_{key} {_fmt(m.get(key))}  "
                      f"val_hd95 {_fmt(m.get('hd95'))}  lr {ev.lr:.2e}  {ev.time_s:.1f} s"
                      + ("  *best" if ev.is_best else ""), flush=True)
            elif name == "DoneEvent":
                if ev.time_limit_reached:
                    print(f"time limit reached after epoch {ev.epochs_run}", flush=True)
                print(f"done: {ev.epochs_run} epoch(s); best epoch {ev.best_epoch}; "
                      f"wrote {ev.last_checkpoint}, {ev.best_checkpoint}, {ev.history_csv}")
                if ev.postprocessing:
                    from napari_tumorseg.inference.postprocess import describe

                    print(describe(ev.postprocessing) + "; kept in best.pt", flush=True)
            elif name == "CancelledEvent":
                print(f"cancelled at epoch {ev.epoch + 1}, batch {ev.batch}; state saved to "
                      f"{ev.checkpoint} (resume with --resume)", file=sys.stderr)
                return 130
            elif name == "ErrorEvent":
                raise TumorSegError(ev.message)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        distributed.cleanup()
    return 0
