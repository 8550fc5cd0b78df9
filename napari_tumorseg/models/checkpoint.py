"""One checkpoint format for every model of the registry.

A checkpoint is ``torch.save`` of a dict holding only plain types, so it loads with
``torch.load(weights_only=True)`` (no pickled code runs on load)::

    {
      "format": "napari-tumorseg-checkpoint", "format_version": 1,
      "model_name": str, "config": dict, "in_channels": int, "out_channels": int,
      "preprocessing": dict, "class_names": list[str], "history": list[dict],
      "extra": dict, "state_dict": {name: tensor}, "torch_version": str, "created": str,
    }

``config`` is the full build config (registry defaults merged with the given values), so
``create_model(model_name, in_channels, out_channels, **config)`` rebuilds the same
architecture even if the defaults change later.
"""

from __future__ import annotations

import datetime
import math
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from napari_tumorseg.errors import TumorSegError, first_line
from napari_tumorseg.fileio import atomic_path

FORMAT = "napari-tumorseg-checkpoint"
FORMAT_VERSION = 1
# A checkpoint's config rebuilds its model before any weight is read: above this many
# parameters (4 GB in float32; the largest registry model is ~0.1 G) it is refused
# before anything is allocated, so a hostile or mistyped config cannot exhaust memory.
MAX_PARAMETERS = 1_000_000_000
_PLAIN_SCALARS = (bool, int, float, str, type(None))


def _check_plain(value: Any, where: str) -> None:
    """Refuse anything ``torch.load(weights_only=True)`` would refuse, naming where it is."""
    # Exact types: a str/int/float subclass (torch's TorchVersion, numpy.float64, IntEnum)
    # pickles as its class and weights_only refuses it.
    if type(value) in _PLAIN_SCALARS or isinstance(value, torch.Tensor):
        return
    if isinstance(value, (torch.dtype, torch.device, torch.Size)):
        return
    if type(value) in (list, tuple):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if type(value) in (dict, OrderedDict):
        for k, v in value.items():
            if type(k) not in (str, int):
                raise TumorSegError(f"checkpoint {where}: key {k!r} must be str or int")
            _check_plain(v, f"{where}[{k!r}]")
        return
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    hint = " (convert with .tolist() or torch.as_tensor)" if kind.startswith("numpy") else ""
    raise TumorSegError(f"checkpoint {where}: {kind} cannot be stored{hint}")


def _merged_config(model_name: str, config: dict) -> dict:
    from napari_tumorseg.models.registry import get_info

    info = get_info(model_name)  # unknown name -> TumorSegError listing the known ones
    cfg = {**info.default_config, **config}
    cfg.pop("pretrained", None)  # weights come from the checkpoint itself
    return cfg


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    model_name: str,
    config: dict,
    in_channels: int,
    out_channels: int,
    preprocessing: dict,
    class_names: list[str],
    history: list[dict],
    extra: dict | None = None,
    overwrite: bool = True,
) -> Path:
    """Write ``model`` and its metadata to ``path`` atomically; return the path.

    ``preprocessing`` describes how inputs were prepared (size, normalisation, channels),
    ``history`` holds one dict of metrics per epoch. ``extra`` is for the training engine
    (optimiser / scheduler / GradScaler state dicts, RNG states, epoch counters, ...).
    Every value must be weights_only-safe: tensors, bool/int/float/str/None, and lists,
    tuples and dicts (str or int keys) of those. NumPy arrays and scalars are refused:
    store ``numpy.random.get_state()`` and friends with ``.tolist()`` / ``torch.as_tensor``.
    An unsafe value raises TumorSegError naming it, before anything is written.
    """
    cfg = _merged_config(model_name, dict(config))
    ckpt = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_name": model_name,
        "config": cfg,
        "in_channels": int(in_channels),
        "out_channels": int(out_channels),
        "preprocessing": dict(preprocessing),
        "class_names": [str(c) for c in class_names],
        "history": [dict(h) for h in history],
        "extra": dict(extra or {}),
        "torch_version": str(torch.__version__),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    for key in ("config", "preprocessing", "history", "extra"):
        _check_plain(ckpt[key], key)
    ckpt["state_dict"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    with atomic_path(path, overwrite=overwrite) as tmp:
        torch.save(ckpt, tmp)
    return Path(path)


def _one_line(err: BaseException) -> str:
    # torch's weights_only refusal buries the reason under a generic preamble.
    reason = [ln for ln in str(err).splitlines() if ln.strip().startswith("WeightsUnpickler error:")]
    return first_line(reason[0] if reason else err, 160)


def _read(path: str | os.PathLike, map_location: Any) -> Any:
    path = Path(path)
    if not path.exists():
        raise TumorSegError(f"checkpoint {path} not found")
    if path.is_dir():
        raise TumorSegError(f"checkpoint {path} is a folder, not a file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for bad files; all mean "unreadable"
        raise TumorSegError(
            f"{path} is not a readable checkpoint (corrupt, truncated or not a torch file): "
            f"{_one_line(err)}"
        ) from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def check_state_dict(model: nn.Module, state: dict, source: str) -> None:
    """Raise TumorSegError on the first missing, unexpected or mis-shaped key."""
    own = model.state_dict()
    for key, value in own.items():
        if key not in state:
            raise TumorSegError(f"{source}: missing weight {key!r} for this model")
        if tuple(state[key].shape) != tuple(value.shape):
            raise TumorSegError(
                f"{source}: shape mismatch at {key!r}: file has {tuple(state[key].shape)}, "
                f"model needs {tuple(value.shape)}"
            )
    extra = [k for k in state if k not in own]
    if extra:
        raise TumorSegError(f"{source}: weight {extra[0]!r} does not belong to this model")


def load_checkpoint(
    path: str | os.PathLike, map_location: Any = "cpu", build: bool = True
) -> tuple[nn.Module | None, dict]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns ``(model, ckpt)``: the rebuilt model with its weights loaded (strict) and put in
    eval mode, or ``None`` when ``build`` is false, and the checkpoint dict. Every failure
    (missing file, corrupt or foreign file, unknown model name, shape mismatch) is a
    one-line TumorSegError.
    """
    ckpt = _read(path, map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        if _is_state_dict(ckpt):
            raise TumorSegError(
                f"{path} is a bare state dict, not a napari-tumorseg checkpoint; "
                "use it as pretrained=PATH"
            )
        raise TumorSegError(f"{path} is not a napari-tumorseg checkpoint")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise TumorSegError(
            f"{path}: checkpoint format version {version!r} is newer than this plugin reads "
            f"({FORMAT_VERSION})"
        )
    for key in ("model_name", "config", "in_channels", "out_channels", "state_dict"):
        if key not in ckpt:
            raise TumorSegError(f"{path}: checkpoint lacks {key!r}")
    if not isinstance(ckpt["state_dict"], dict):
        raise TumorSegError(f"{path}: checkpoint 'state_dict' is not a dict of weights")
    check_finite_weights(ckpt["state_dict"], str(path))
    if not build:
        return None, ckpt
    from napari_tumorseg.models.registry import create_model

    args = (ckpt["model_name"], ckpt["in_channels"], ckpt["out_channels"], ckpt["config"])
    probe = _shape_only_model(*args)
    if probe is not None:
        n = sum(p.numel() for p in probe.parameters())
        if n > MAX_PARAMETERS:
            raise TumorSegError(
                f"{path}: its config builds a {ckpt['model_name']} of {n / 1e9:.1f} G parameters "
                f"(limit {MAX_PARAMETERS / 1e9:.0f} G); refused before allocating it"
            )
        # Mismatched weights are found on the shape-only model, before the real one exists.
        check_state_dict(probe, ckpt["state_dict"], str(path))
    model = create_model(args[0], in_channels=args[1], out_channels=args[2], **args[3])
    check_state_dict(model, ckpt["state_dict"], str(path))
    model.load_state_dict(ckpt["state_dict"], strict=True)
    model.eval()
    return model, ckpt


def _shape_only_model(name: str, in_channels: int, out_channels: int, config: dict) -> nn.Module | None:
    """The model built on torch's meta device (shapes, no memory), or None if it cannot be.

    Unknown names and options still raise their one-line TumorSegError here.
    """
    from napari_tumorseg.models.registry import create_model

    try:
        with torch.device("meta"):
            return create_model(name, in_channels=in_channels, out_channels=out_channels, **config)
    except TumorSegError:
        raise
    except Exception:  # noqa: BLE001 - a builder doing real arithmetic at init: build for real
        return None


def check_finite_weights(state: dict, source: str) -> None:
    """Refuse weights holding NaN/Inf: such a model returns NaN, which thresholds to "no tumour"."""
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel():
            bad = int((~torch.isfinite(value)).sum())
            if bad:
                raise TumorSegError(
                    f"{source}: weight {key!r} holds {bad} NaN/Inf value(s) (a diverged run?); "
                    "use an earlier checkpoint"
                )


def load_pretrained(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Initialise ``model`` from a local file: our checkpoint, a bare state dict, or a dict
    wrapping one under ``"state_dict"`` / ``"model"``. Never touches the network."""
    obj = _read(path, "cpu")
    state = None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        state = obj.get("state_dict")
    elif _is_state_dict(obj):
        state = obj
    elif isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if _is_state_dict(obj.get(key)):
                state = obj[key]
                break
    if state is None:
        raise TumorSegError(f"{path} holds no model weights (neither a checkpoint nor a state dict)")
    check_state_dict(model, state, f"pretrained {path}")
    check_finite_weights(state, f"pretrained {path}")
    model.load_state_dict(state, strict=True)
    return model


def is_checkpoint_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds one of this plugin's checkpoints (not a bare state dict)."""
    try:
        obj = _read(path, "cpu")
    except TumorSegError:
        return False
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def warm_start(model: nn.Module, path: str | os.PathLike, channel_names) -> str:
    """Start ``model`` from one of our checkpoints of the same architecture; returns what
    was done, in words.

    A run may read more sequences than the checkpoint did (a FLAIR + T1c click model
    taught to read T1 and T2 too): the first layer's weights are placed by sequence name and
    a sequence the checkpoint never read starts at zero weight, so the widened model first
    gives exactly the checkpoint's answers and learns what the new sequences add.
    """
    from napari_tumorseg.channels import channel_indices

    _, ckpt = load_checkpoint(path, build=False)
    src = ckpt["state_dict"]
    own = model.state_dict()
    old_names = list((ckpt.get("preprocessing") or {}).get("channel_names") or [])
    new_names = list(channel_names or [])
    old_in = int(ckpt["in_channels"])
    new_in = len(new_names) if new_names else old_in
    state, widened = {}, []
    for key, value in own.items():
        w = src.get(key)
        if w is None:
            raise TumorSegError(f"pretrained {path}: missing weight {key!r} for this model")
        w = w.to(value.dtype)
        if tuple(w.shape) == tuple(value.shape):
            state[key] = w
            continue
        extra = value.shape[1] - new_in if value.ndim >= 2 else -1
        if (value.ndim >= 2 and w.shape[0] == value.shape[0] and w.shape[2:] == value.shape[2:]
                and extra >= 0 and w.shape[1] == old_in + extra and old_names and new_names):
            idx = channel_indices(new_names, old_names, f"pretrained {Path(path).name}", "refuse")
            if idx is None:
                raise TumorSegError(f"pretrained {path}: its channels ({', '.join(old_names)}) "
                                    "name no sequences to place among this run's")
            out = torch.zeros_like(value)
            for k_old, k_new in enumerate(idx):
                out[:, k_new] = w[:, k_old]
            out[:, new_in:] = w[:, old_in:]  # the prompt channels follow the image ones
            state[key] = out
            widened.append(key)
            continue
        raise TumorSegError(f"pretrained {path}: shape mismatch at {key!r}: file has "
                            f"{tuple(w.shape)}, model needs {tuple(value.shape)}")
    extra_keys = [k for k in src if k not in own]
    if extra_keys:
        raise TumorSegError(f"pretrained {path}: weight {extra_keys[0]!r} does not belong to this model")
    check_finite_weights(state, f"pretrained {path}")
    model.load_state_dict(state, strict=True)
    if not widened:
        return f"started from {Path(path).name}"
    new = [n for n in new_names if n not in old_names]
    return (f"started from {Path(path).name}, widened from {', '.join(old_names)} to "
            f"{', '.join(new_names)} ({', '.join(new)} at zero weight)")


def checkpoint_summary(ckpt: dict) -> dict:
    """Small JSON-friendly description (no tensors), e.g. for ``tumorseg info``."""
    n_params = sum(v.numel() for v in ckpt.get("state_dict", {}).values()
                   if isinstance(v, torch.Tensor) and v.is_floating_point())
    last = ckpt.get("history", [])[-1:] or [{}]
    return {
        "model_name": ckpt.get("model_name"),
        "in_channels": ckpt.get("in_channels"),
        "out_channels": ckpt.get("out_channels"),
        "class_names": ckpt.get("class_names"),
        "epochs": len(ckpt.get("history", [])),
        "last_epoch": {k: v for k, v in last[0].items()
                       if isinstance(v, (int, str)) or (isinstance(v, float) and math.isfinite(v))},
        "parameters": n_params,
        "created": ckpt.get("created"),
    }
