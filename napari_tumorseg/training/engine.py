"""The training engine: one generator that the widget, the CLI and torchrun all drive.

``train(config, cancel)`` yields :mod:`~napari_tumorseg.training.events` and ends with
exactly one of DoneEvent, CancelledEvent or ErrorEvent; it never raises for user errors,
out of memory or a diverging loss.

Checkpoints (``out_dir/last.pt`` every epoch, ``best.pt`` on a new best validation Dice,
classifier: validation accuracy) use :func:`napari_tumorseg.models.checkpoint.save_checkpoint`
and carry, in ``extra``, the optimiser, scheduler, GradScaler and RNG states and the
position in the run, so resuming continues exactly.

Recipe: unset options come from the model's paper preset or, on a CPU where the model
has one, its CPU recipe (models.registry.Recipe: width, input size, loss, schedule, a time
limit); ``recipe="paper"`` / ``"cpu"`` chooses. ``max_minutes`` (wall time from the call,
data preparation included) ends the run after the epoch that passes it, keeping best.pt.
On a CPU a step is estimated before the first one runs (a timed half-size forward); one
over ``SLOW_STEP_S`` is announced in the StartEvent's warnings.

Cancel granularity: ``cancel()`` is polled before every optimiser step, between
validation batches and between cases while the data are prepared. On cancel, ``last.pt`` is rewritten with the state *at that point*
(weights after the last completed step, optimiser, RNG, the running training-loss sums
and the batch index). Every sample's order, augmentation and patch position derive from
(seed, epoch, position), so resuming from that checkpoint replays the rest of the epoch
exactly as an uninterrupted run would: cancel-then-resume gives the same weights and
losses as never cancelling (same seed, same device and thread count, CPU). A cancel
during validation resumes at the start of that validation. A NaN/inf loss or an error
stops the run *without* writing, so the last good checkpoint is kept.

Threads: ``threads=None`` uses all cores but one (leaving one for napari's GUI thread, so
the viewer stays responsive while training runs in a worker thread); the previous
torch thread count is restored when the generator ends.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import random
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from napari_tumorseg.brats import REGION_NAMES
from napari_tumorseg.channels import shared_channels
from napari_tumorseg.errors import TumorSegError, first_line
from napari_tumorseg.fileio import atomic_path
from napari_tumorseg.intensity import new_run_method
from napari_tumorseg.models.unet import norm_for_data
from napari_tumorseg.output_kinds import output_kind
from napari_tumorseg.precision import prefer_channels_last
from napari_tumorseg.training import distributed as dist_utils
from napari_tumorseg.training.augment import AugmentConfig, lesion_contrast_for_data
from napari_tumorseg.training.datasets import (
    ClassDataset,
    EpochPlan,
    PatchDataset,
    SegDataset,
    case_channels,
    check_foreground,
    data_paths,
    name_channels,
    open_source,
    prepare_case,
    split_refs,
)
from napari_tumorseg.training.events import (
    CancelledEvent,
    DoneEvent,
    EpochEvent,
    ErrorEvent,
    Event,
    StartEvent,
    StepEvent,
)
from napari_tumorseg.training.losses import DeepSupervisionLoss, build_loss
from napari_tumorseg.training.preprocessing import Preprocessing, adapt_channels
from napari_tumorseg.training.weight_average import WeightAverage

LAST, BEST, HISTORY = "last.pt", "best.pt", "history.csv"
SLOW_STEP_S = 10.0  # a step estimated slower than this is announced before it starts

# The time limit's clock: monotonic, and one name that tests can replace.
_clock = time.monotonic


class _Cancelled(Exception):
    """A cancel while the data were being prepared (nothing to save yet)."""


@dataclass
class TrainConfig:
    """Everything a run needs. ``None`` means "the recipe's value": ``recipe`` picks the
    model's paper preset or its CPU recipe (see models.registry.Recipe)."""

    model: str
    data: Any  # a path, several (a list, or "A;B"), or in-memory (image, mask, spacing, case_id)s
    out_dir: str
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    optimizer: str | None = None  # adam | adamw | sgd
    optimizer_params: dict | None = None  # sgd: momentum (0.9), nesterov; adam(w): betas, eps
    scheduler: str | None = None  # none | step | cosine | poly
    scheduler_params: dict | None = None
    loss: str | None = None  # see losses.LOSS_NAMES
    loss_params: dict | None = None
    deep_supervision_weights: list | None = None
    size: int | list | None = None  # 2D: in-plane size; 3D: patch size (default: model's)
    spatial: str = "resize"  # 2D only: resize | pad_crop
    normalize: str = "auto"  # auto (= robust) | robust | zscore | scale255 | minmax | none
    in_channels: int | None = None
    device: str = "auto"  # auto | cuda | cpu | mps (cuda:N accepted)
    # auto: bf16 autocast on a CPU with native bf16 (AMX, AVX-512-BF16), fp32 on other CPUs,
    # fp16 autocast with a GradScaler on CUDA (the preset's amp); fp32 | bf16 force it.
    # A resumed run keeps its checkpoint's unless another is named. See napari_tumorseg.precision.
    precision: str = "auto"
    amp: bool | None = None  # older switch: False = fp32 when precision is auto
    amp_dtype: str = "fp16"  # CUDA autocast under precision auto: fp16 (with GradScaler) | bf16
    grad_clip: float | None = None  # max grad norm; 0 switches the preset's clipping off
    # Decay of the moving average of the weights that is validated and kept in best.pt
    # (training.weight_average); 0 switches it off, None: the recipe's.
    weight_average: float | None = None
    augmentation: Any = None  # bool, strength (0-2) or dict of AugmentConfig fields (None: recipe's)
    seed: int = 0
    val_fraction: float = 0.2
    early_stopping_patience: int | None = None
    resume: str | None = None
    num_workers: int = 0
    threads: int | None = None
    model_config: dict = field(default_factory=dict)
    tiny: bool = False  # start from the model's tiny_config (tests, CPU smoke runs)
    pretrained: str | None = None
    max_train_items: int | None = None  # cap on training cases/images (quick runs)
    max_val_items: int | None = None
    empty_slice_fraction: float = 0.25  # 2D slices of volumes: share of empty slices kept
    patches_per_volume: int = 2  # 3D models: patches drawn per volume and epoch
    fg_prob: float = 0.67
    region_convention: str | None = None  # brats | brats2023 | brats2012 (None: guess)
    # A segmentation model's output kind: "binary" (tumour) or "regions" (BraTS WT / TC / ET,
    # one sigmoid each, three output channels). None: the model's (its registry entry).
    output: str | None = None
    hd95: bool = True
    overwrite: bool = False  # replace last.pt / best.pt / history.csv of another run
    recipe: str | None = None  # cpu | paper; None: cpu on a CPU where the model has one
    max_minutes: float | None = None  # stop after the epoch that passes this (None: recipe's)
    # Click-guided training (see napari_tumorseg.interactive.simulate): the model gets
    # prompt channels, and a simulated user clicks on each sample from its ground truth.
    interactive: bool = False
    click_encoding: dict | None = None  # ClickEncoding fields: kind, radius_mm, min_radius_px, with_prev_mask
    click_iterations: int = 3  # error-click rounds per batch, drawn in 0..N
    no_click_fraction: float = 0.2  # share of samples without any click (automatic segmentation)
    # Share of clicked samples trained on their region grown or shrunk by 1-4 px (another
    # annotator's line), so error clicks teach the network to move its whole boundary.
    click_style_fraction: float = 0.0
    # The sequences the model reads, by name (e.g. FLAIR, T1, T1c, T2); a case lacking one
    # gets a zero channel there (None: the sequences every training case holds).
    channels: list | None = None
    # The sequences of data folders whose files do not name them, folder -> names in stored
    # order (LGG kaggle_3m: [T1, FLAIR, T1c]), so they join a run matched by sequence.
    source_channels: dict | None = None
    # Case ids (with their patients) to validate on, whatever the split would draw.
    val_cases: list | None = None

    @classmethod
    def from_file(cls, path: str | os.PathLike, **overrides: Any) -> "TrainConfig":
        """Read a YAML or JSON file of fields; ``overrides`` (not None) win."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise TumorSegError(f"cannot read config {path}: {err.strerror}") from None
        try:
            if path.suffix.lower() == ".json":
                values = json.loads(text)
            else:
                import yaml

                values = yaml.safe_load(text)
        except Exception as err:
            raise TumorSegError(f"{path}: not valid YAML/JSON ({first_line(err)})") from None
        if not isinstance(values, dict):
            raise TumorSegError(f"{path}: expected a mapping of training options")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise TumorSegError(f"unknown training option(s): {', '.join(unknown)}")
        missing = [n for n in ("model", "data", "out_dir") if values.get(n) in (None, "")]
        if missing:
            raise TumorSegError(f"training config lacks {', '.join(missing)}")
        _check_ranges(values)
        if values.get("channels"):
            values = {**values, "channels": list(_sequences(values["channels"]))}
        return cls(**values)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if isinstance(self.data, (str, os.PathLike)):
            d["data"] = str(self.data)
        elif data_paths(self.data) is not None:
            d["data"] = [str(p) for p in self.data]
        else:
            d["data"] = "<in-memory layers>"
        d["out_dir"] = str(self.out_dir)
        return _plain(d)


# Each option's allowed range, as a test and the words that say it.
_RANGES = {
    "epochs": (lambda v: v >= 1, "at least 1"),
    "batch_size": (lambda v: v >= 1, "at least 1"),
    "threads": (lambda v: v >= 1, "at least 1"),
    "num_workers": (lambda v: v >= 0, "0 or more"),
    "patches_per_volume": (lambda v: v >= 1, "at least 1"),
    "lr": (lambda v: v > 0, "above 0"),
    "val_fraction": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "empty_slice_fraction": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "fg_prob": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "weight_average": (lambda v: 0 <= v < 1, "in [0, 1)"),
}


def _sequences(names) -> tuple[str, ...]:
    """``channels`` of a TrainConfig as MR sequence names (each must say one, once)."""
    from napari_tumorseg.io.nifti import guess_sequence

    names = [names] if isinstance(names, str) else list(names)
    seqs = []
    for n in names:
        for part in str(n).split(","):
            part = part.strip()
            if not part:
                continue
            seq = guess_sequence(part)
            if not seq:
                raise TumorSegError(f"channels: {part!r} is not an MR sequence (FLAIR, T1, T1c, T2)")
            if seq in seqs:
                raise TumorSegError(f"channels: {seq} given twice")
            seqs.append(seq)
    if not seqs:
        raise TumorSegError("channels: name at least one MR sequence")
    return tuple(seqs)


def _check_ranges(values: dict) -> None:
    """One line for an option out of its range (a config file skips argparse's checks)."""
    for name, (ok, words) in _RANGES.items():
        v = values.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not ok(v):
            raise TumorSegError(f"{name} must be {words}, got {v!r}")


def _plain(value: Any) -> Any:
    """JSON/weights_only-safe copy (Paths -> str, tuples -> lists, numpy -> python)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


# ----------------------------------------------------------------------------- setup


def pick_device(name: str) -> torch.device:
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TumorSegError("device cuda asked for but no CUDA GPU is available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise TumorSegError("device mps asked for but Apple MPS is not available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise TumorSegError(f"unknown device {name!r}; use auto, cuda, cpu or mps") from None


def default_threads() -> int:
    return max(1, (os.cpu_count() or 1) - 1)


def _rng_state() -> dict:
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# Optimiser options a run may set (TrainConfig.optimizer_params), by optimiser.
_OPTIMIZERS = {
    "adam": (torch.optim.Adam, {"betas", "eps", "amsgrad"}, {}),
    "adamw": (torch.optim.AdamW, {"betas", "eps", "amsgrad"}, {}),
    "sgd": (torch.optim.SGD, {"momentum", "nesterov", "dampening"}, {"momentum": 0.9}),
}


def _build_optimizer(name: str, params, lr: float, weight_decay: float, options: dict | None = None):
    try:
        cls, allowed, defaults = _OPTIMIZERS[name.lower()]
    except KeyError:
        raise TumorSegError(f"unknown optimizer {name!r}; use adam, adamw or sgd") from None
    unknown = sorted(set(options or {}) - allowed)
    if unknown:
        raise TumorSegError(f"optimizer {name!r} does not take {', '.join(unknown)}")
    return cls(params, lr=lr, weight_decay=weight_decay, **{**defaults, **(options or {})})


def _build_scheduler(name: str, opt, params: dict, epochs: int):
    """Epoch-wise schedules; state dicts hold plain values only (checkpoint-safe)."""
    name = (name or "none").lower()
    p = dict(params or {})
    if name == "none":
        return None
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=int(p.get("step_size", 10)),
                                               gamma=float(p.get("gamma", 0.1)))
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=int(p.get("t_max", p.get("T_max", epochs))) or 1,
            eta_min=float(p.get("eta_min", 0.0)))
    if name == "poly":
        return torch.optim.lr_scheduler.PolynomialLR(
            opt, total_iters=int(p.get("total_iters", epochs)) or 1, power=float(p.get("power", 0.9)))
    raise TumorSegError(f"unknown scheduler {name!r}; use none, step, cosine or poly")


def _is_oom(err: BaseException) -> bool:
    if isinstance(err, torch.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def write_history_csv(path: Path, history: list[dict]) -> None:
    """Atomic CSV: one row per epoch, columns in first-seen order."""
    cols: list[str] = []
    for row in history:
        for k in row:
            if k not in cols:
                cols.append(k)
    with atomic_path(path, overwrite=True) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            for row in history:
                w.writerow(row)


# ----------------------------------------------------------------------------- the run


class _Run:
    """State of one training run; ``train()`` drives it and turns failures into events."""

    def __init__(self, cfg: TrainConfig, cancel: Callable[[], bool] | None):
        self.cfg = cfg
        self.cancel = cancel or (lambda: False)
        self.ctx = dist_utils.context()
        self.out = Path(cfg.out_dir)
        self.last_path, self.best_path = self.out / LAST, self.out / BEST
        self.history_path = self.out / HISTORY
        self.saved_any = False
        self.warnings: list[str] = []
        self.t_start = _clock()  # a time limit counts data preparation too: it is wall time

    # -- setup ------------------------------------------------------------------------
    def setup(self) -> None:
        """Resolve the settings, build the data, build the model, restore a resumed run."""
        _seed_everything(self.cfg.seed)  # before the model is built: its initial weights too
        self._open_resume()
        self._resolve_settings()
        self._build_data()
        self._build_model()
        self._restore_position()

    def _open_resume(self) -> None:
        """The checkpoint to resume (checked against the config), or a folder free to write."""
        from napari_tumorseg.models.checkpoint import load_checkpoint

        cfg = self.cfg
        self.resume_ckpt = None
        if cfg.resume:
            _, self.resume_ckpt = load_checkpoint(cfg.resume, build=False)
            if "train_state" not in self.resume_ckpt.get("extra", {}):
                raise TumorSegError(f"{cfg.resume} has no training state to resume from")
            if cfg.model and cfg.model != self.resume_ckpt["model_name"]:
                raise TumorSegError(
                    f"{cfg.resume} is a {self.resume_ckpt['model_name']!r} checkpoint, "
                    f"not {cfg.model!r}")
        elif not cfg.overwrite and self.ctx.rank == 0:
            existing = [p.name for p in (self.last_path, self.best_path, self.history_path) if p.exists()]
            if existing:
                raise TumorSegError(
                    f"{self.out} already holds {', '.join(existing)} of another run; "
                    "resume from it, choose another folder, or pass overwrite")

    def _resolve_settings(self) -> None:
        """The recipe's values with the config's overrides; device and precision."""
        from napari_tumorseg.models import get_info

        cfg = self.cfg
        self.model_name = cfg.model
        info = get_info(self.model_name)
        self.info = info
        self.recipe = self._recipe()
        preset = self.recipe.preset
        self.max_minutes = cfg.max_minutes if cfg.max_minutes is not None else self.recipe.max_minutes
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise TumorSegError(f"max_minutes must be above 0, got {self.max_minutes}")
        # The output kind's name; self.output answers for it. A dense model may be asked for
        # another dense kind (a 2D U-Net giving BraTS regions); a resumed run keeps its own.
        self.kind = self._output_kind_name(info)
        self.output = output_kind(self.kind)
        self.dims = info.dims
        self.epochs = int(cfg.epochs if cfg.epochs is not None else preset.epochs)
        self.batch_size = int(cfg.batch_size if cfg.batch_size is not None else preset.batch_size)
        self.lr = float(cfg.lr if cfg.lr is not None else preset.lr)
        self.weight_decay = float(cfg.weight_decay if cfg.weight_decay is not None else preset.weight_decay)
        self.optimizer_name = cfg.optimizer or preset.optimizer
        self.scheduler_name = cfg.scheduler or preset.scheduler
        self.scheduler_params = dict(preset.scheduler_params or {})
        self.scheduler_params.update(cfg.scheduler_params or {})
        clip = cfg.grad_clip if cfg.grad_clip is not None else preset.grad_clip
        self.grad_clip = float(clip) if clip else None
        self.weight_average = self._weight_average()
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise TumorSegError("epochs and batch size must be at least 1 and lr positive")

        self.device = pick_device(cfg.device)
        if self.ctx.world_size > 1:
            self.device = self.ctx.device
        self.precision = self._precision(preset)
        self.amp = self.precision.enabled

    def _weight_average(self) -> float:
        """The config's decay, else a resumed run's own, else the recipe's (0: off)."""
        if self.cfg.weight_average is not None:
            return float(self.cfg.weight_average)
        if self.resume_ckpt is not None:
            resolved = self.resume_ckpt.get("extra", {}).get("resolved", {})
            return float(resolved.get("weight_average") or 0.0)
        return float(self.recipe.weight_average)

    def _precision(self, preset):
        """The run's precision (napari_tumorseg.precision.resolve): the config's choice; a
        resumed run keeps its checkpoint's unless another is named. On CUDA, "auto" keeps the
        older rule: the preset's (or the config's) amp, in amp_dtype."""
        from napari_tumorseg.precision import resolve

        cfg = self.cfg
        choice = (cfg.precision or "auto").lower()
        if choice == "auto" and self.resume_ckpt is not None:
            choice = _resumed_precision(self.resume_ckpt, self.device.type)
        amp = cfg.amp
        if self.device.type == "cuda" and choice == "auto":
            amp = preset.amp if amp is None else bool(amp)
            if amp and cfg.amp_dtype == "bf16":
                choice = "bf16"
        p = resolve(choice, self.device, amp=amp)
        if "emulates" in p.reason:
            self.warnings.append(f"bf16 on a CPU without native bf16 ({p.reason}): fp32 is faster here")
        return p

    def _output_kind_name(self, info) -> str:
        if self.resume_ckpt is not None:
            return Preprocessing.from_dict(self.resume_ckpt["preprocessing"]).target
        asked = self.cfg.output
        if asked in (None, "", info.output):
            return info.output
        if asked not in ("binary", "regions"):
            raise TumorSegError(f"output must be 'binary' or 'regions', got {asked!r}")
        if not output_kind(info.output).dense:
            raise TumorSegError(f"{self.model_name} is a classifier: its output cannot be {asked!r}")
        return asked

    def _build_data(self) -> None:
        """Find and split the data, settle the model's inputs and outputs on it (a resumed
        run keeps its checkpoint's), and prepare the datasets."""
        cfg, info = self.cfg, self.info
        self.augment_cfg = AugmentConfig.from_value(
            self.recipe.augmentation if cfg.augmentation is None else cfg.augmentation)
        source = open_source(cfg.data)
        name_channels(source, cfg.source_channels or {})
        if not self.output.dense and source.kind != "classes":
            raise TumorSegError(f"{self.model_name} is a classifier: give one folder of images per class")
        if self.output.dense and source.kind == "classes":
            raise TumorSegError(f"{self.model_name} segments: the data has class folders but no masks")
        train_refs, val_refs, warns = split_refs(source, cfg.val_fraction, cfg.seed, cfg.val_cases)
        self.warnings += warns
        if cfg.max_train_items:
            train_refs = _take(train_refs, cfg.max_train_items, cfg.seed)
        if cfg.max_val_items:
            val_refs = _take(val_refs, cfg.max_val_items, cfg.seed + 1)
        if not train_refs:
            raise TumorSegError(f"no training data in {cfg.data}")

        if self.resume_ckpt is not None:
            ck = self.resume_ckpt
            self.model_config = dict(ck["config"])
            self.in_channels, self.out_channels = int(ck["in_channels"]), int(ck["out_channels"])
            self.prep = Preprocessing.from_dict(ck["preprocessing"])
            self.class_names = list(ck.get("class_names") or info.class_names)
            first = None
            if not _names_option(cfg.augmentation, "lesion_contrast_p"):
                # as the run trained (0 for a checkpoint from before the option)
                done = ((ck.get("extra") or {}).get("resolved") or {}).get("augmentation") or {}
                self.augment_cfg.lesion_contrast_p = float(done.get("lesion_contrast_p", 0.0))
        else:
            # Starting from one of our checkpoints: its architecture (width, norm, click
            # encoding), which its weights need; the config's model_config still wins.
            warm = self._warm_start_config()
            self.model_config = {**self.recipe.model_config, **warm, **(info.tiny_config if cfg.tiny else {}),
                                 **(cfg.model_config or {})}
            if cfg.interactive and not ("interactive" in warm and cfg.click_encoding is None):
                from napari_tumorseg.interactive.encoding import ClickEncoding

                if not self.output.dense:
                    raise TumorSegError(f"{self.model_name} is a classifier: it cannot be click-guided")
                enc = ClickEncoding.from_config(cfg.click_encoding)
                if self.kind == "regions" and not enc.targets:
                    # A regions model learns which region the clicks mean (whole tumour,
                    # core, enhancing): one network for every target the user may pick.
                    from dataclasses import replace as _replace

                    from napari_tumorseg.interactive.encoding import TARGET_CHANNEL
                    enc = _replace(enc, targets=tuple(TARGET_CHANNEL))
                self.model_config["interactive"] = enc.to_config()
            first = train_refs[0].load()
            # Sources that store different scans, or the same in another order: the run
            # takes the sequences every case holds, matched by name (None: as stored).
            # Named channels: those sequences, zeros where a case lacks one.
            self.missing_channels = "zeros" if cfg.channels else "refuse"
            shared = (_sequences(cfg.channels) if cfg.channels
                      else shared_channels([r.channel_names for r in train_refs + val_refs]))
            if shared:
                first.image = case_channels(first, shared, train_refs[0].name, self.missing_channels)
                first.channel_names = list(shared)
            data_ch = int(first.image.shape[0])
            self.in_channels = int(cfg.in_channels or (data_ch if not info.pretrained else info.in_channels))
            if not self.output.dense:
                self.class_names = list(source.class_names)
                self.out_channels = len(self.class_names)
            elif self.kind != info.output:  # asked for another dense kind than the model's
                self.class_names = ["background", "tumour"] if self.kind == "binary" else list(REGION_NAMES)
                self.out_channels = 1 if self.kind == "binary" else len(REGION_NAMES)
            else:
                self.class_names = list(info.class_names)
                self.out_channels = int(info.out_channels)
            self.prep = self._preprocessing(first, info, train_refs[0].label_convention)
            if self.model_config.get("norm") == "auto":
                self.model_config["norm"] = norm_for_data(first.image)
            if not _names_option(cfg.augmentation, "lesion_contrast_p"):
                self.augment_cfg.lesion_contrast_p = lesion_contrast_for_data(first.image)
        # Names of the metric channels beyond one (GLIMS: WT, TC, ET).
        self.region_names = self.output.channel_names(self.class_names, int(self.out_channels)) or []
        self.clicks = None
        if self.model_config.get("interactive"):
            from napari_tumorseg.interactive.encoding import ClickEncoding
            from napari_tumorseg.interactive.simulate import ClickSimulator

            self.clicks = ClickSimulator(ClickEncoding.from_config(self.model_config["interactive"]),
                                         cfg.click_iterations, cfg.no_click_fraction,
                                         style_fraction=cfg.click_style_fraction)

        # Channel adaptation must be possible for the data actually given.
        self.train_cases = self._prepare_all(train_refs)
        if self.output.dense:
            check_foreground([c.labels for c in self.train_cases], str(cfg.data))
        if self.kind == "regions" and not any(
                _labelled_regions(c.target)[1:].all() for c in self.train_cases if c.target is not None):
            raise TumorSegError("a regions model learns core and enhancing from BraTS label maps, and "
                                "every mask given marks one lesion: train a binary model on it")
        self.val_cases = self._prepare_all(val_refs)
        self.train_ds, self.val_ds = self._datasets()
        if len(self.train_ds) == 0:
            raise TumorSegError("no training samples after preprocessing")
        self.train_ids = sorted({r.case_id for r in train_refs})
        self.val_ids = sorted({r.case_id for r in val_refs})

    def _warm_start_config(self) -> dict:
        """The model config of ``pretrained`` when it is one of our checkpoints of this model."""
        from napari_tumorseg.models.checkpoint import is_checkpoint_file, load_checkpoint

        path = self.cfg.pretrained
        # Decided once: _build_model warm-starts from it (a bare state dict goes to the builder).
        self.warm_from = path if path and is_checkpoint_file(path) else None
        if self.warm_from is None:
            return {}
        _, ck = load_checkpoint(path, build=False)
        if ck["model_name"] != self.model_name:
            raise TumorSegError(f"pretrained {path} is a {ck['model_name']!r} checkpoint, not {self.model_name!r}")
        return dict(ck.get("config") or {})

    def _build_model(self) -> None:
        """Model (resumed weights, or pretrained ones), loss, optimiser, schedule, scaler."""
        from napari_tumorseg.models import create_model
        from napari_tumorseg.models.checkpoint import warm_start

        cfg, preset = self.cfg, self.recipe.preset
        pretrained = None if self.resume_ckpt is not None else cfg.pretrained
        # One of our checkpoints (_warm_start_config): weights placed by the run's sequences
        # (warm_start); a bare state dict or a paper's weights: the builder's own loading.
        ours = pretrained is not None and pretrained == getattr(self, "warm_from", None)
        model = create_model(self.model_name, in_channels=self.in_channels,
                             out_channels=self.out_channels,
                             pretrained=None if ours else pretrained, **self.model_config)
        self.warm_start_note = warm_start(model, pretrained, self.prep.channel_names) if ours else None
        if self.resume_ckpt is not None:
            model.load_state_dict(self.resume_ckpt["state_dict"], strict=True)
        self.model = model.to(self.device)
        self.channels_last = prefer_channels_last(self.model, self.device, self.dims)
        # After the resumed weights (a resumed run without a saved average starts it there)
        # and the layout (the average validates in the model's own).
        self.averaged = WeightAverage(self.model, self.weight_average) if self.weight_average > 0 else None
        self.net = self.model
        if self.ctx.world_size > 1:
            self.net = dist_utils.wrap_ddp(self.model, self.device)
        loss_name = cfg.loss or preset.loss
        loss_params = dict(preset.loss_params or {}) if cfg.loss in (None, preset.loss) else {}
        loss_params.update(cfg.loss_params or {})
        ds_weights = cfg.deep_supervision_weights or preset.deep_supervision_weights
        self.loss_fn = build_loss(loss_name, mode=self.kind, deep_supervision_weights=ds_weights,
                                  **{k: v for k, v in loss_params.items() if k != "variants"})
        self.loss_desc = {"loss": loss_name, "loss_params": _plain(
            {k: v for k, v in loss_params.items() if k != "variants"})}
        self.optimizer = _build_optimizer(self.optimizer_name, self.model.parameters(), self.lr,
                                          self.weight_decay, cfg.optimizer_params)
        self.scheduler = _build_scheduler(self.scheduler_name, self.optimizer,
                                          self.scheduler_params, self.epochs)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision.dtype == torch.float16)

    def _restore_position(self) -> None:
        """Where the run starts: epoch 0, or the resumed checkpoint's exact position."""
        self.history: list[dict] = []
        self.start_epoch, self.start_batch, self.global_step = 0, 0, 0
        self.partial: dict[str, float] = {}
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        if self.resume_ckpt is not None:
            self._restore(self.resume_ckpt)

    def _recipe(self):
        """The chosen recipe; a resumed run keeps its own unless one is named."""
        from napari_tumorseg.models import default_recipe, get_recipe

        name = self.cfg.recipe
        if name is None and self.resume_ckpt is not None:
            name = self.resume_ckpt.get("extra", {}).get("resolved", {}).get("recipe")
        if name is None:
            device = pick_device(self.cfg.device) if self.ctx.world_size == 1 else self.ctx.device
            name = default_recipe(self.model_name, device.type)
        return get_recipe(self.model_name, name)

    def _prepare_all(self, refs) -> list:
        """Load and preprocess every case, answering a cancel between cases (reading 500
        JPEGs takes a while on a busy CPU, and the user may have clicked the wrong data)."""
        cases = []
        for ref in refs:
            if self.cancel():
                raise _Cancelled()
            # Region targets read each case in its own edition's label convention, unless
            # the run names one.
            cases.append(prepare_case(ref, self.prep, per_case_convention=self.cfg.region_convention is None))
        return cases

    def estimate_step_s(self) -> float | None:
        """Seconds one training step should take on a CPU, before it is run: a forward of one
        sample at half the input edge, timed, scaled by pixels and batch, x3 for the backward
        pass and optimiser step (within ~25 % of the real step for the U-Net from width 8 to
        64; a quarter edge overestimated 5x, its fixed costs dominate). Costs ~1/50 of a
        step; no RNG draw, no BN statistics update (eval mode), so resumed runs stay exact."""
        if self.device.type != "cpu" or len(self.train_ds) == 0 or self.clicks_enabled():
            return None
        x = self.train_ds[0][0]
        full = [int(s) for s in x.shape[1:]]
        mult = max(1, int(self.info.input_multiple))
        small = [min(s, max(mult, int(math.ceil(s / 2 / mult)) * mult)) for s in full]
        xs = torch.zeros((1, x.shape[0], *small), dtype=x.dtype)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                self.precision.run(self.model, xs)  # the first call sets up kernels: not timed
                t = time.perf_counter()
                self.precision.run(self.model, xs)
                dt = time.perf_counter() - t
        except Exception:  # noqa: BLE001 - an estimate must never stop a run
            return None
        finally:
            self.model.train(was_training)
        return 3.0 * dt * self.batch_size * float(np.prod(full)) / float(np.prod(small))

    def clicks_enabled(self) -> bool:
        return getattr(self, "clicks", None) is not None

    def _preprocessing(self, first, info, convention: str | None = None) -> Preprocessing:
        """The run's preprocessing, resolved from the config and the first training case
        (``convention``: the label convention its names say)."""
        cfg = self.cfg
        _, channel_mode = adapt_channels(first.image[:, :1, :1, :1], self.in_channels)
        fields = dict(
            # A new run records a rule that does not depend on how a source stored its scans
            # (napari_tumorseg.intensity): robust for scanner data, the 8-bit window for 8-bit
            # exports; "auto" in a checkpoint is the old rule.
            normalize=new_run_method(first.image.dtype) if cfg.normalize == "auto" else cfg.normalize,
            channel_mode=channel_mode,
            channel_names=tuple(first.channel_names or ()),
            missing_channels=self.missing_channels,
            class_names=tuple(self.class_names),
            **self.output.target_settings(np.unique(first.labels), cfg.region_convention or convention,
                                          int(self.out_channels)),
        )
        if self.dims == 2:
            size = cfg.size if cfg.size is not None else (self.recipe.input_size or info.input_size)[-2:]
            return Preprocessing.for_model(2, size, self.in_channels, self.kind, spatial=cfg.spatial, **fields)
        patch = cfg.size if cfg.size is not None else (self.model_config.get("img_size") or info.input_size)
        return Preprocessing.for_model(3, None, self.in_channels, self.kind, patch_size=patch, **fields)

    def _datasets(self):
        cfg = self.cfg
        if not self.output.dense:
            return ClassDataset(self.train_cases, self.augment_cfg), ClassDataset(self.val_cases)
        if self.dims == 3:
            patch = self.prep.patch_size
            return (PatchDataset(self.train_cases, patch, cfg.patches_per_volume, cfg.fg_prob,
                                 self.augment_cfg),
                    PatchDataset(self.val_cases, patch, 1))
        return (SegDataset(self.train_cases, self.augment_cfg, cfg.empty_slice_fraction, cfg.seed),
                SegDataset(self.val_cases, None, 1.0, cfg.seed))

    # -- checkpoint state ------------------------------------------------------------
    def _extra(self, epoch: int, batch: int) -> dict:
        return {
            "train_state": {
                "epoch": int(epoch), "batch": int(batch), "global_step": int(self.global_step),
                "epochs": int(self.epochs), "partial": dict(self.partial),
                "best_score": self.best_score, "best_epoch": self.best_epoch,
                "bad_epochs": int(self.bad_epochs),
            },
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng": _rng_state(),
            "train_config": self.cfg.to_dict(),
            "resolved": self.resolved(),
            "split": {"train": self.train_ids, "val": self.val_ids},
        }

    def resolved(self) -> dict:
        """The settings actually used (preset filled in, overrides applied)."""
        return {
                "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "weight_decay": self.weight_decay, "optimizer": self.optimizer_name,
                "optimizer_params": _plain(self.cfg.optimizer_params or {}),
                "scheduler": self.scheduler_name, "scheduler_params": _plain(self.scheduler_params),
                "grad_clip": self.grad_clip, "amp": self.amp, "precision": self.precision.name,
                "precision_reason": self.precision.reason, **self.loss_desc,
                "augmentation": _plain(dataclasses.asdict(self.augment_cfg)),
                "device": str(self.device), "world_size": self.ctx.world_size,
                "recipe": self.recipe.name, "max_minutes": self.max_minutes,
                "threads": torch.get_num_threads(), "weight_average": self.weight_average,
                **({"norm": self.model_config["norm"]} if "norm" in self.model_config else {}),
                **({"warm_start": self.warm_start_note} if getattr(self, "warm_start_note", None) else {}),
        }

    def _restore(self, ck: dict) -> None:
        extra = ck["extra"]
        st = extra["train_state"]
        self.history = [dict(h) for h in ck.get("history", [])]
        self.start_epoch, self.start_batch = int(st["epoch"]), int(st["batch"])
        self.global_step = int(st.get("global_step", 0))
        self.partial = dict(st.get("partial") or {})
        self.best_score, self.best_epoch = st.get("best_score"), st.get("best_epoch")
        self.bad_epochs = int(st.get("bad_epochs", 0))
        self.optimizer.load_state_dict(extra["optimizer"])
        if self.scheduler is not None and extra.get("scheduler"):
            self.scheduler.load_state_dict(extra["scheduler"])
        if self.scaler.is_enabled() and extra.get("scaler"):
            self.scaler.load_state_dict(extra["scaler"])
        if extra.get("rng"):
            _set_rng_state(extra["rng"])
        if self.averaged is not None and extra.get("weight_average"):
            self.averaged.load_state_dict(extra["weight_average"])
        saved = extra.get("split", {})
        if saved and (saved.get("train") != self.train_ids or saved.get("val") != self.val_ids):
            self.warnings.append("the train/validation split differs from the checkpoint's")

    @property
    def eval_model(self) -> nn.Module:
        """The weights validated and kept in best.pt: the moving average when the run keeps one."""
        return self.averaged.module if self.averaged is not None else self.model

    def save(self, path: Path, epoch: int, batch: int, best: bool = False) -> None:
        """last.pt: the trained weights, with the average in ``extra`` to resume it; best.pt:
        the validated weights (the average when kept), what a user predicts with."""
        if self.ctx.rank != 0:
            return
        from napari_tumorseg.models.checkpoint import save_checkpoint

        extra = self._extra(epoch, batch)
        if self.averaged is not None and not best:
            extra["weight_average"] = self.averaged.state_dict()
        save_checkpoint(
            path, self.eval_model if best else self.model, model_name=self.model_name,
            config=self.model_config, in_channels=self.in_channels, out_channels=self.out_channels,
            preprocessing=self.prep.to_dict(), class_names=self.class_names,
            history=_plain(self.history), extra=extra, overwrite=True)
        self.saved_any = True

    # -- steps ------------------------------------------------------------------------
    def click_inputs(self, x, y, ds, keys, train: bool, model: nn.Module | None = None):
        """The batch with its prompt channels (simulated clicks; see interactive.simulate)
        and the targets to train on (restyled samples' region replaced)."""
        seeds = [k[1] if train else None for k in keys]
        spacings = [ds.spacing(k[0]) for k in keys]
        xin, y_out, _ = self.clicks.prepare(model or self.model, x, y, seeds, spacings, train)
        return xin, y_out

    def _forward_loss(self, x, y, net: nn.Module | None = None):
        # Autocast for the forward only; the loss and metrics get float32 logits.
        out = self.precision.run(net or self.net, x)
        if isinstance(out, (list, tuple)) and not isinstance(self.loss_fn, DeepSupervisionLoss):
            # A deep-supervised model whose preset names no weights: seed 004's 1, 1/2, 1/4, 1/8.
            self.loss_fn = DeepSupervisionLoss(self.loss_fn)
        if isinstance(out, torch.Tensor) and self.output.dense:
            # Sigmoid targets carry a channel axis, softmax targets are class indices.
            spatial = y.shape[2:] if self.output.sigmoid else y.shape[1:]
            if tuple(out.shape[2:]) != tuple(spatial):
                # SegFormer-style heads predict at a lower resolution: upsample the logits.
                out = F.interpolate(out.float(), size=tuple(spatial),
                                    mode="bilinear" if out.ndim == 4 else "trilinear",
                                    align_corners=False)
        return out, self.loss_fn(out, y)

    def _pred_target(self, out, y):
        """Boolean prediction and target (N, C, *sp) for metrics; classifier: class indices."""
        out = out[0] if isinstance(out, (list, tuple)) else out
        return self.output.metric_masks(out, y)

    def _accumulate(self, acc: dict, out, y) -> None:
        pred, tgt = self._pred_target(out, y)
        if not self.output.dense:
            acc["correct"] = acc.get("correct", 0.0) + float((pred == tgt).sum())
            acc["count"] = acc.get("count", 0.0) + float(tgt.numel())
            return
        tp = float((pred & tgt).sum())
        fp = float((pred & ~tgt).sum())
        fn = float((~pred & tgt).sum())
        acc["tp"] = acc.get("tp", 0.0) + tp
        acc["fp"] = acc.get("fp", 0.0) + fp
        acc["fn"] = acc.get("fn", 0.0) + fn
        acc["tn"] = acc.get("tn", 0.0) + float(pred.numel()) - tp - fp - fn

    def _train_metrics(self, acc: dict) -> dict:
        if not self.output.dense:
            return {"train_accuracy": acc.get("correct", 0.0) / max(acc.get("count", 0.0), 1.0)}
        from napari_tumorseg.metrics import metrics_from_counts

        m = metrics_from_counts(acc.get("tp", 0.0), acc.get("fp", 0.0), acc.get("fn", 0.0),
                                acc.get("tn", 0.0))
        return {"train_dice": m["dice"], "train_iou": m["iou"],
                "train_pixel_accuracy": m["pixel_accuracy"]}

    def _batches(self, ds, plan: EpochPlan, start: int):
        sampler = [plan.batch(b) for b in range(start, plan.n_batches)]
        if self.cfg.num_workers <= 0:
            # In-process: no DataLoader, whose iterator draws a seed from the global RNG and
            # would make a resumed epoch diverge from an uninterrupted one (dropout).
            collate = torch.utils.data.default_collate
            return (collate([ds[k] for k in keys]) for keys in sampler)
        # Worker seeds come from a private generator, for the same reason.
        return torch.utils.data.DataLoader(ds, batch_sampler=sampler,
                                           num_workers=self.cfg.num_workers,
                                           generator=torch.Generator().manual_seed(self.cfg.seed))

    def choose_postprocessing(self) -> dict | None:
        """Whether best.pt keeps only its largest component, decided on the validation
        cases and written into best.pt (``extra["postprocessing"]``; see
        :mod:`napari_tumorseg.inference.postprocess`). One-object 2D models only: region
        models have their own rule, click models answer the user's clicks, 3D models would
        need the sliding window here. None when not measured (or cancelled)."""
        from napari_tumorseg.inference.postprocess import choose_rule

        if (self.output.name not in ("binary", "multiclass") or self.clicks is not None
                or self.prep.dims != 2 or not self.val_cases):
            return None
        ckpt = torch.load(self.best_path, map_location="cpu", weights_only=True)
        model = self.model
        model.load_state_dict(ckpt["state_dict"])  # the run is over: its best weights
        model.eval()
        mult = max(1, int(self.info.input_multiple))
        pairs = []
        with torch.no_grad():
            for case in self.val_cases:
                if self.cancel() or case.target is None:
                    return None
                img = case.image
                h, w = img.shape[-2:]
                ph, pw = -h % mult, -w % mult
                masks = []
                for z0 in range(0, img.shape[1], self.batch_size):
                    x = torch.from_numpy(np.ascontiguousarray(img[:, z0:z0 + self.batch_size].transpose(1, 0, 2, 3)))
                    if ph or pw:
                        x = F.pad(x, (0, pw, 0, ph))
                    out = self.precision.run(model, x.to(self.device))
                    out = (out[0] if isinstance(out, (list, tuple)) else out).float()
                    if tuple(out.shape[-2:]) != tuple(x.shape[-2:]):
                        out = F.interpolate(out, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
                    masks.append(self.output.predicted_mask(out).any(1)[..., :h, :w].cpu().numpy())
                truth = np.asarray(self.output.target_mask(case.target)).any(0)
                pairs.append((np.concatenate(masks), truth))
        choice = choose_rule(pairs)
        ckpt.setdefault("extra", {})["postprocessing"] = choice
        with atomic_path(self.best_path, overwrite=True) as tmp:
            torch.save(ckpt, tmp)
        return choice

    def validate(self) -> tuple[float | None, dict, bool]:
        """(val loss, metrics, cancelled). Runs on rank 0 only."""
        if len(self.val_ds) == 0:
            return None, {}, False
        from napari_tumorseg.metrics import MetricAverager, multi_region_metrics, segmentation_metrics

        net = self.eval_model
        net.eval()
        plan = EpochPlan(len(self.val_ds), self.batch_size, self.cfg.seed, 0, shuffle=False)
        loss_sum, n = 0.0, 0
        correct, count = 0, 0
        per_class_hits: dict[int, list[int]] = {}
        preds: dict[int, np.ndarray] = {}
        pos = 0
        with torch.no_grad():
            for bi, batch in enumerate(self._batches(self.val_ds, plan, 0)):
                if self.cancel():
                    self.model.train()
                    return None, {}, True
                x, y = batch[0].to(self.device), batch[1].to(self.device)
                if self.clicks is not None:  # one click at the object's deepest point
                    x, y = self.click_inputs(x, y, self.val_ds, plan.batch(bi), train=False, model=net)
                # The bare module: DDP's forward would wait for ranks that do not validate.
                out, loss = self._forward_loss(x, y, net)
                loss_sum += float(loss) * x.shape[0]
                n += x.shape[0]
                pred, tgt = self._pred_target(out, y)
                if not self.output.dense:
                    for p, t in zip(pred.tolist(), tgt.tolist()):
                        hits = per_class_hits.setdefault(t, [0, 0])
                        hits[0] += int(p == t)
                        hits[1] += 1
                    correct += int((pred == tgt).sum())
                    count += int(tgt.numel())
                    continue
                pred_np = pred.cpu().numpy()
                for k in range(pred_np.shape[0]):
                    preds[pos + k] = pred_np[k]
                pos += pred_np.shape[0]
        self.model.train()
        val_loss = loss_sum / max(n, 1)
        if not self.output.dense:
            accs = [h[0] / h[1] for h in per_class_hits.values()]
            return val_loss, {"accuracy": correct / max(count, 1),
                              "mean_accuracy": float(np.mean(accs)) if accs else math.nan}, False
        avg = MetricAverager()
        for ci, case, pred_vol, tgt_vol, spacing in self._val_volumes(preds):
            if pred_vol.shape[0] == 1:
                avg.add(segmentation_metrics(pred_vol[0], tgt_vol[0], spacing, hd=self.cfg.hd95))
            else:
                names = list(self.region_names or [])
                known = _labelled_regions(case.target)
                if not known.all():  # a one-object mask: its whole tumour only
                    pred_vol, tgt_vol = pred_vol[known], tgt_vol[known]
                    names = [n for n, k in zip(names, known) if k] if names else [
                        REGION_NAMES[i] for i in np.flatnonzero(known)]
                regs = multi_region_metrics(pred_vol, tgt_vol, spacing, names or None,
                                            hd=self.cfg.hd95)
                row = dict(regs.pop("mean"))
                for name, m in regs.items():
                    row.update({f"{k}_{name}": v for k, v in m.items()})
                avg.add(row)
        return val_loss, avg.compute(), False

    def _val_volumes(self, preds: dict[int, np.ndarray]):
        """Per-case (prediction, target) volumes: slices of one case are stacked, so
        Dice and HD95 (mm, from the voxel spacing) are per patient, not per slice."""
        ds = self.val_ds
        if isinstance(ds, PatchDataset):
            for i in range(len(ds)):
                x, y = ds[i]
                y = y.numpy()
                tgt = self.output.target_mask(y)
                yield i, ds.cases[ds.items[i][0]], preds[i], tgt, ds.spacing(i)
            return
        by_case: dict[int, list[tuple[int, int]]] = {}
        for i, (ci, z) in enumerate(ds.items):
            by_case.setdefault(ci, []).append((z, i))
        for ci, entries in by_case.items():
            case = ds.cases[ci]
            entries.sort()
            pred = np.stack([preds[i] for _, i in entries], axis=1)  # (C, Z, y, x)
            zs = [z for z, _ in entries]
            tgt = self.output.target_mask(case.target)[:, zs]
            if pred.shape[1] == 1:  # a 2D image: 2D metrics with the in-plane spacing
                yield ci, case, pred[:, 0], tgt[:, 0], case.spacing[1:]
            else:
                yield ci, case, pred, tgt, case.spacing


def _labelled_regions(target: np.ndarray) -> np.ndarray:
    """(C,) bool: the target's channels that carry a label (NaN marks an unknown region)."""
    t = np.asarray(target)
    if not np.issubdtype(t.dtype, np.floating):
        return np.ones(t.shape[0], bool)
    return ~np.isnan(t.reshape(t.shape[0], -1)).any(1)


def _resumed_precision(ck: dict, device_type: str) -> str:
    """The precision a resumed run keeps: the one its checkpoint records; an older checkpoint
    (none recorded) that ran without mixed precision stays fp32; fp16 (CUDA) elsewhere: auto."""
    resolved = ck.get("extra", {}).get("resolved", {})
    name = resolved.get("precision")
    if name in ("fp32", "bf16"):
        return name
    if name is None and not resolved.get("amp", False):
        return "fp32"
    return "auto"


def _names_option(augmentation, option: str) -> bool:
    """Whether the run's ``augmentation`` setting names ``option`` itself (then it wins over
    a choice made from the data)."""
    return isinstance(augmentation, AugmentConfig) or (isinstance(augmentation, dict) and option in augmentation)


_NORM_WORDS = {"batch": "BatchNorm", "instance": "instance norm", "group": "GroupNorm"}
_INTENSITY_WORDS = {"robust": "robust z-score", "window8": "8-bit window"}


def recipe_summary(config: dict) -> str:
    """``cpu recipe; BatchNorm; 8-bit window``: what a StartEvent's config says the run chose
    where the data decides (the start line of the CLI and the Train dock)."""
    parts = [f"{config.get('recipe')} recipe"]
    if config.get("norm") in _NORM_WORDS:
        parts.append(_NORM_WORDS[config["norm"]])
    method = (config.get("preprocessing") or {}).get("normalize")
    if method in _INTENSITY_WORDS:
        parts.append(_INTENSITY_WORDS[method])
    return "; ".join(parts)


def _take(refs, n: int, seed: int):
    """At most ``n`` whole cases' items, chosen with the seed."""
    ids = sorted({r.case_id for r in refs})
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    keep = set(order[:n])
    return [r for r in refs if r.case_id in keep]


def train(config: TrainConfig, cancel: Callable[[], bool] | None = None) -> Iterator[Event]:
    """Run training, yielding progress events; see the module doc."""
    prev_threads = torch.get_num_threads()
    run = _Run(config, cancel)
    try:
        torch.set_num_threads(int(config.threads or default_threads()))
        yield from _train(run)
    except _Cancelled:
        yield CancelledEvent(0, 0, None, "training cancelled while preparing the data")
    except TumorSegError as err:
        yield ErrorEvent(str(err), _last_good(run))
    except Exception as err:  # noqa: BLE001 - a run must end with an event, never a crash
        if _is_oom(err):
            yield ErrorEvent(
                f"out of memory on {getattr(run, 'device', '?')} at batch size "
                f"{getattr(run, 'batch_size', '?')}: lower the batch size or the input size",
                _last_good(run))
        else:
            line = first_line(err)
            yield ErrorEvent(f"training failed: {type(err).__name__}: {line}", _last_good(run),
                             traceback.format_exc())
    finally:
        torch.set_num_threads(prev_threads)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _last_good(run: _Run) -> str | None:
    return str(run.last_path) if run.last_path.exists() else None


def _train(run: _Run) -> Iterator[Event]:
    run.setup()
    cfg = run.cfg
    main = run.ctx.rank == 0
    if main:
        run.out.mkdir(parents=True, exist_ok=True)
    step_estimate = run.estimate_step_s()
    if step_estimate is not None and step_estimate > SLOW_STEP_S:
        other = run.info.cpu_recipe is not None and run.recipe.name != "cpu"
        run.warnings.append(
            f"each step will take about {step_estimate:.0f} s on this CPU (batch {run.batch_size}): "
            + ("the CPU recipe, or " if other else "")
            + "a smaller width, input size or batch trains faster")
    yield StartEvent(
        model=run.model_name, device=str(run.device), n_train=len(run.train_ds),
        n_val=len(run.val_ds), train_cases=run.train_ids, val_cases=run.val_ids,
        start_epoch=run.start_epoch, epochs=run.epochs,
        config={**run.resolved(), "preprocessing": run.prep.to_dict()},
        warnings=list(run.warnings), step_estimate_s=step_estimate)
    deadline = run.t_start + 60.0 * run.max_minutes if run.max_minutes else None
    out_of_time = False
    n_batches = EpochPlan(len(run.train_ds), run.batch_size, cfg.seed, 0,
                          rank=run.ctx.rank, world_size=run.ctx.world_size).n_batches
    total_steps = run.epochs * n_batches
    session_steps, session_time, last_val_time = 0, 0.0, 0.0
    stopped_early = False
    run.model.train()
    for epoch in range(run.start_epoch, run.epochs):
        t_epoch = time.perf_counter()
        plan = EpochPlan(len(run.train_ds), run.batch_size, cfg.seed, epoch,
                         rank=run.ctx.rank, world_size=run.ctx.world_size)
        start_batch = run.start_batch if epoch == run.start_epoch else 0
        if start_batch == 0:
            run.partial = {}
        acc = run.partial  # running sums of this epoch, saved on cancel
        b = start_batch
        loader = iter(run._batches(run.train_ds, plan, start_batch))
        while b < plan.n_batches:
            if run.cancel():
                run.save(run.last_path, epoch, b)
                yield CancelledEvent(epoch, b, str(run.last_path) if main else None)
                return
            t0 = time.perf_counter()
            x, y = next(loader)
            x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
            if run.clicks is not None:
                x, y = run.click_inputs(x, y, run.train_ds, plan.batch(b), train=True)
            run.optimizer.zero_grad(set_to_none=True)
            out, loss = run._forward_loss(x, y)
            bad = not torch.isfinite(loss).item()
            if run.ctx.world_size > 1:
                bad = dist_utils.any_flag(bad, run.device)
            if bad:
                yield ErrorEvent(
                    f"the loss became {float(loss)} at epoch {epoch + 1}, batch {b + 1}: "
                    "training stopped (lower the learning rate?); the last good checkpoint is kept",
                    _last_good(run))
                return
            run.scaler.scale(loss).backward()
            if run.grad_clip:
                run.scaler.unscale_(run.optimizer)
                torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.grad_clip)
            run.scaler.step(run.optimizer)
            run.scaler.update()
            if run.averaged is not None:
                run.averaged.update(run.model)
            run.global_step += 1
            acc["loss_sum"] = acc.get("loss_sum", 0.0) + float(loss.detach()) * x.shape[0]
            acc["n"] = acc.get("n", 0.0) + float(x.shape[0])
            with torch.no_grad():
                run._accumulate(acc, out, y)
            dt = time.perf_counter() - t0
            session_steps += 1
            session_time += dt
            done = epoch * n_batches + b + 1
            eta = (session_time / session_steps) * (total_steps - done) + last_val_time * (run.epochs - epoch)
            if deadline is not None:
                # The run ends with the epoch that passes the limit: at most one epoch after it.
                avg = session_time / session_steps
                rest_of_epoch = avg * (plan.n_batches - b - 1) + last_val_time
                eta = min(eta, max(rest_of_epoch, deadline - _clock() + avg * plan.n_batches + last_val_time))
            yield StepEvent(run.global_step, epoch, b, plan.n_batches, float(loss.detach()), eta)
            b += 1

        sums = acc
        if run.ctx.world_size > 1:
            sums = dist_utils.sum_dict(acc, run.device)
        train_loss = sums.get("loss_sum", 0.0) / max(sums.get("n", 0.0), 1.0)
        train_metrics = run._train_metrics(sums)

        t_val = time.perf_counter()
        val_loss, metrics, cancelled = (None, {}, False)
        if main:
            val_loss, metrics, cancelled = run.validate()
        if run.ctx.world_size > 1:
            dist_utils.barrier()
        if cancelled:
            run.save(run.last_path, epoch, plan.n_batches)
            yield CancelledEvent(epoch, plan.n_batches, str(run.last_path))
            return
        last_val_time = time.perf_counter() - t_val

        lr = float(run.optimizer.param_groups[0]["lr"])
        if run.scheduler is not None:
            run.scheduler.step()
        score = _score(run, val_loss, metrics, train_loss)
        is_best = run.best_score is None or score > run.best_score
        if is_best:
            run.best_score, run.best_epoch, run.bad_epochs = score, epoch + 1, 0
        else:
            run.bad_epochs += 1
        row = {"epoch": epoch + 1, "train_loss": train_loss,
               "val_loss": val_loss if val_loss is not None else math.nan, "lr": lr,
               "time_s": round(time.perf_counter() - t_epoch, 3), **train_metrics,
               **{f"val_{k}": float(v) for k, v in metrics.items()}}
        run.history.append(row)
        run.partial = {}
        if main:
            run.save(run.last_path, epoch + 1, 0)
            if is_best:
                run.save(run.best_path, epoch + 1, 0, best=True)
            write_history_csv(run.history_path, run.history)
        stop = bool(cfg.early_stopping_patience) and run.bad_epochs >= int(cfg.early_stopping_patience)
        if run.ctx.world_size > 1:
            stop = dist_utils.any_flag(stop, run.device)
        out_of_time = deadline is not None and _clock() >= deadline
        if run.ctx.world_size > 1:
            out_of_time = dist_utils.any_flag(out_of_time, run.device)
        yield EpochEvent(epoch, train_loss, val_loss, {**metrics, **train_metrics}, lr, is_best,
                         str(run.last_path), str(run.best_path) if run.best_path.exists() else None,
                         row["time_s"])
        if stop:
            stopped_early = True
            break
        if out_of_time:
            break
    choice = run.choose_postprocessing() if main and run.best_path.exists() else None
    yield DoneEvent(len(run.history), run.best_epoch, run.best_score, str(run.last_path),
                    str(run.best_path) if run.best_path.exists() else None,
                    str(run.history_path), stopped_early,
                    time_limit_reached=out_of_time and len(run.history) < run.epochs,
                    postprocessing=choice)


def _score(run: _Run, val_loss, metrics: dict, train_loss: float) -> float:
    """Higher is better: validation Dice (classifier: accuracy); no validation: -train loss."""
    key = "dice" if run.output.dense else "accuracy"
    value = metrics.get(key)
    if value is not None and math.isfinite(value):
        return float(value)
    if val_loss is not None and math.isfinite(val_loss):
        return -float(val_loss)
    return -float(train_loss)


def run_to_end(config: TrainConfig, cancel: Callable[[], bool] | None = None) -> list[Event]:
    """Drive :func:`train` to its end and return every event (scripts and tests)."""
    return list(train(config, cancel))
