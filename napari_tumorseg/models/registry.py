"""One registry of every architecture: name -> builder, paper defaults, training preset.

Model modules register themselves with :func:`register_model`; importing
``napari_tumorseg.models`` imports them all, so the registry is complete.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch.nn as nn

from napari_tumorseg.errors import TumorSegError


@dataclass
class TrainingPreset:
    """The paper's training recipe; the trainer starts from it, every value overridable."""

    loss: str  # "bce" | "dice" | "combo" | "bce_dice" | "dice_ce" | "ce"
    loss_params: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "adam"  # "adam" | "adamw" | "sgd"
    lr: float = 1e-4
    weight_decay: float = 0.0
    scheduler: str = "none"  # "none" | "step" | "cosine" | "poly"
    scheduler_params: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 8
    epochs: int = 50
    amp: bool = True
    grad_clip: float | None = None
    deep_supervision_weights: list[float] | None = None


@dataclass
class ModelInfo:
    name: str
    paper: str  # seed file in ../shared/seeds
    description: str
    dims: int  # 2 or 3
    output: str  # "binary" | "regions" | "classes" | "multiclass"
    input_multiple: int  # spatial size must be a multiple of this inside the net (we pad)
    input_size: tuple[int, ...]  # recommended (paper) input size
    in_channels: int
    out_channels: int
    class_names: list[str]
    preset: TrainingPreset
    default_config: dict[str, Any] = field(default_factory=dict)
    tiny_config: dict[str, Any] = field(default_factory=dict)  # for tests: small width
    pretrained: str = ""  # what pretrained=PATH expects, "" if the paper trains from scratch

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d


@dataclass
class _Entry:
    builder: Callable[..., nn.Module]
    info: ModelInfo


_REGISTRY: dict[str, _Entry] = {}


def register_model(info: ModelInfo):
    """Decorator: ``@register_model(ModelInfo(...))`` on a builder
    ``builder(in_channels, out_channels, pretrained=None, **config) -> nn.Module``."""

    def deco(builder):
        if info.name in _REGISTRY:
            raise RuntimeError(f"model {info.name!r} registered twice")
        _REGISTRY[info.name] = _Entry(builder, info)
        return builder

    return deco


def _entry(name: str) -> _Entry:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise TumorSegError(f"unknown model {name!r}; known models: {known}") from None


def list_models() -> list[str]:
    _ensure_loaded()
    return list(_REGISTRY)


def model_info(name: str) -> dict[str, Any]:
    return _entry(name).info.as_dict()


def get_info(name: str) -> ModelInfo:
    return copy.deepcopy(_entry(name).info)


def create_model(
    name: str,
    in_channels: int | None = None,
    out_channels: int | None = None,
    pretrained: str | None = None,
    **config: Any,
) -> nn.Module:
    """Build a registry model. ``interactive`` (True or a click-encoding dict, see
    :mod:`napari_tumorseg.interactive.encoding`) makes it click-guided: ``in_channels``
    stays the image channels and the prompt channels are added to the first layer."""
    entry = _entry(name)
    info = entry.info
    cfg = {**info.default_config, **config}
    interactive = cfg.pop("interactive", None)
    in_ch = info.in_channels if in_channels is None else in_channels
    out_ch = info.out_channels if out_channels is None else out_channels
    try:
        if interactive not in (None, False):
            from napari_tumorseg.interactive.encoding import ClickEncoding, build_click_guided

            if info.output == "classes":
                raise TumorSegError(f"{name} is a classifier: it cannot be click-guided")
            return build_click_guided(entry.builder, in_ch, ClickEncoding.from_config(interactive),
                                      out_channels=out_ch, pretrained=pretrained, **cfg)
        return entry.builder(in_channels=in_ch, out_channels=out_ch, pretrained=pretrained, **cfg)
    except TypeError as err:  # an option the builder does not take: a user mistake
        if "argument" not in str(err):
            raise
        raise TumorSegError(f"{name}: {err}") from None


_LOADED = False


def _ensure_loaded() -> None:
    # Importing the package imports every model module, which registers it.
    global _LOADED
    if not _LOADED:
        _LOADED = True
        import napari_tumorseg.models  # noqa: F401
