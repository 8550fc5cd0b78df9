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


RECIPE_NAMES = ("cpu", "paper")


@dataclass
class Recipe:
    """A named way to train a model: the paper's own, or one measured to learn on a CPU.

    ``paper`` is built from :class:`ModelInfo` (its preset, default config and input
    size); ``cpu`` is declared beside the paper preset by the models that have one. The
    trainer starts from the chosen recipe; every value stays overridable.
    """

    name: str  # one of RECIPE_NAMES
    preset: TrainingPreset
    model_config: dict[str, Any] = field(default_factory=dict)  # over default_config
    input_size: tuple[int, ...] | None = None  # None: the model's input_size
    augmentation: float = 1.0  # strength, 0 = off
    max_minutes: float | None = None  # stop after the epoch that passes this
    note: str = ""  # where the numbers come from
    weight_average: float = 0.0  # decay of the weights' moving average validated (0: off)


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
    cpu_recipe: Recipe | None = None  # measured to learn in minutes on a CPU (see get_recipe)

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


def get_recipe(name: str, recipe: str = "paper") -> Recipe:
    """The ``paper`` or ``cpu`` recipe of a model (a copy, safe to change)."""
    info = _entry(name).info
    if recipe == "paper":
        return Recipe("paper", copy.deepcopy(info.preset), {}, tuple(info.input_size),
                      1.0, None, f"the preset of {info.paper}")
    if recipe == "cpu":
        if info.cpu_recipe is None:
            raise TumorSegError(f"{name} has no CPU recipe; use the paper recipe")
        return copy.deepcopy(info.cpu_recipe)
    raise TumorSegError(f"unknown recipe {recipe!r}; use {' or '.join(RECIPE_NAMES)}")


def default_recipe(name: str, device_type: str) -> str:
    """``cpu`` where the model has a CPU recipe and the device is a CPU, else ``paper``."""
    return "cpu" if device_type == "cpu" and _entry(name).info.cpu_recipe is not None else "paper"


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

            from napari_tumorseg.output_kinds import output_kind

            if not output_kind(info.output).dense:
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
