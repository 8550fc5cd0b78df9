"""Clicks as extra input channels of a network, and the wrapper that makes any segmenter
click-guided.

A click-guided network sees the image channels followed by ``n_channels`` prompt maps:
positive clicks, negative clicks and, with ``with_prev_mask``, the previous mask (the
previous answer of the network, as in DeepEdit and RITM, so a new click corrects it rather
than starting over). A click is a disk (1 inside) or a Gaussian bump sized in mm with the
voxel spacing, so a click means the same anatomy on a 0.5 mm and a 6 mm grid. On a coarse
grid a disk would shrink below a voxel, so it never gets smaller than ``min_radius_px``
voxels in-plane.

The encoding is stored in the checkpoint's ``config["interactive"]`` (plain values), and
:func:`napari_tumorseg.models.create_model` rebuilds the wrapped model from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from napari_tumorseg.errors import TumorSegError

KINDS = ("disk", "gaussian")
#: A click target -> the channel of a BraTS-regions output (WT, TC, ET) it reads.
TARGET_CHANNEL = {"whole": 0, "core": 1, "enhancing": 2}


@dataclass(frozen=True)
class ClickEncoding:
    kind: str = "disk"
    radius_mm: float = 5.0
    min_radius_px: float = 2.0
    with_prev_mask: bool = True
    # What the clicks mean, as constant one-hot planes after the prompt maps ("whole",
    # "core", "enhancing"): one network then serves every target the user may pick, and a
    # positive click in oedema means "tumour" for the whole tumour but nothing for the core.
    targets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(str(t) for t in self.targets))
        bad = [t for t in self.targets if t not in TARGET_CHANNEL]
        if bad:
            raise TumorSegError(f"unknown click target(s) {', '.join(bad)}; use {', '.join(TARGET_CHANNEL)}")
        if self.kind not in KINDS:
            raise TumorSegError(f"unknown click encoding {self.kind!r}; use disk or gaussian")
        if not (self.radius_mm > 0 and math.isfinite(self.radius_mm)):
            raise TumorSegError("the click radius must be a positive number of mm")
        if self.min_radius_px < 0:
            raise TumorSegError("the minimum click radius must not be negative")

    @property
    def n_channels(self) -> int:
        return (3 if self.with_prev_mask else 2) + len(self.targets)

    def to_config(self) -> dict:
        out = {"kind": self.kind, "radius_mm": float(self.radius_mm),
               "min_radius_px": float(self.min_radius_px),
               "with_prev_mask": bool(self.with_prev_mask), "channels": self.n_channels}
        if self.targets:
            out["targets"] = list(self.targets)
        return out

    def target_of(self, target: str | None) -> str | None:
        """The target the network is told: ``target`` when it learned it, the whole tumour
        for "lesion" or no target, None for a network without target planes."""
        if not self.targets:
            return None
        if target in self.targets:
            return target
        if target in (None, "lesion", "whole") and "whole" in self.targets:
            return "whole"
        raise TumorSegError(f"this click model segments {', '.join(self.targets)}, not {target}")

    @classmethod
    def from_config(cls, value) -> "ClickEncoding":
        """From a checkpoint's ``config["interactive"]``, a dict of fields, or True (defaults)."""
        if value is True or value is None:
            return cls()
        if isinstance(value, ClickEncoding):
            return value
        if not isinstance(value, dict):
            raise TumorSegError(f"click encoding must be a mapping, not {type(value).__name__}")
        known = {"kind", "radius_mm", "min_radius_px", "with_prev_mask", "channels", "targets"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise TumorSegError(f"unknown click encoding option(s): {', '.join(unknown)}")
        enc = cls(kind=str(value.get("kind", "disk")),
                  radius_mm=float(value.get("radius_mm", 5.0)),
                  min_radius_px=float(value.get("min_radius_px", 2.0)),
                  with_prev_mask=bool(value.get("with_prev_mask", True)),
                  targets=tuple(value.get("targets") or ()))
        if "channels" in value and int(value["channels"]) != enc.n_channels:
            raise TumorSegError(
                f"click encoding says {value['channels']} channels but its fields give {enc.n_channels}")
        return enc

    # -- maps ------------------------------------------------------------------------
    def radius_mm_on(self, spacing) -> float:
        """The radius used on a grid: ``radius_mm``, or ``min_radius_px`` in-plane voxels
        when that is larger (the last two axes are the in-plane ones)."""
        sp = [float(s) for s in spacing]
        inplane = min(sp[-2:]) if len(sp) >= 2 else sp[0]
        return max(float(self.radius_mm), self.min_radius_px * inplane)

    def click_map(self, shape, spacing, points) -> np.ndarray:
        """One float32 map of ``shape`` (2D or 3D) with every point of ``points`` (n, ndim)
        drawn; overlapping clicks take the maximum."""
        shape = tuple(int(s) for s in shape)
        sp = np.asarray([float(s) for s in spacing][-len(shape):], float)
        if len(sp) != len(shape) or np.any(sp <= 0):
            raise TumorSegError(f"spacing {tuple(spacing)} does not fit a grid of shape {shape}")
        out = np.zeros(shape, np.float32)
        pts = np.asarray(points, float).reshape(-1, len(shape)) if len(points) else np.zeros((0, len(shape)))
        r = self.radius_mm_on(sp)
        # A Gaussian of sigma r/2 is drawn out to 2 sigma (= r): beyond it < 0.14, negligible.
        half = np.ceil(r / sp).astype(int)
        for p in pts:
            centre = np.round(p).astype(int)
            lo = np.maximum(centre - half, 0)
            hi = np.minimum(centre + half + 1, shape)
            if np.any(hi <= lo):
                continue  # the click is off the grid
            axes = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
            d2 = sum(((ax - c) * s) ** 2 for ax, c, s in zip(axes, p, sp))
            box = tuple(slice(a, b) for a, b in zip(lo, hi))
            if self.kind == "disk":
                val = (d2 <= r * r).astype(np.float32)
            else:
                sigma = r / 2.0
                val = np.exp(-d2 / (2 * sigma * sigma)).astype(np.float32)
                val[d2 > r * r] = 0.0
            np.maximum(out[box], val, out=out[box])
        return out

    def maps(self, shape, spacing, positive, negative, prev=None, target: str | None = None) -> np.ndarray:
        """(n_channels, *shape) float32: positive, negative, (optionally) previous mask and
        (a network with ``targets``) the one-hot planes of ``target``."""
        chans = [self.click_map(shape, spacing, positive), self.click_map(shape, spacing, negative)]
        if self.with_prev_mask:
            chans.append(np.zeros(tuple(shape), np.float32) if prev is None
                         else np.asarray(prev, dtype=np.float32).reshape(tuple(shape)))
        told = self.target_of(target)
        for t in self.targets:
            chans.append(np.full(tuple(shape), 1.0 if t == told else 0.0, np.float32))
        return np.stack(chans)


def encoding_of(config: dict | None) -> ClickEncoding | None:
    """The click encoding a model config asks for, or None for an automatic model."""
    value = (config or {}).get("interactive")
    if value in (None, False):
        return None
    return ClickEncoding.from_config(value)


class ClickGuided(nn.Module):
    """Any registry segmenter built with ``image_channels + encoding.n_channels`` inputs.

    Given the image channels alone, the prompt channels are zeros: the network then segments
    automatically, which is what it learned on the no-click share of its training samples,
    so Predict can use an interactive checkpoint like any other.
    """

    def __init__(self, net: nn.Module, encoding: ClickEncoding, image_channels: int):
        super().__init__()
        self.net = net
        self.encoding = encoding
        self.image_channels = int(image_channels)

    def forward(self, x: torch.Tensor):
        c = x.shape[1]
        n = self.encoding.n_channels
        if c == self.image_channels:
            prompts = x.new_zeros((x.shape[0], n, *x.shape[2:]))
            if self.encoding.targets:  # no prompt: told the whole tumour, as its no-click samples were
                told = self.encoding.targets.index(self.encoding.target_of(None))
                prompts[:, n - len(self.encoding.targets) + told] = 1.0
            x = torch.cat([x, prompts], dim=1)
        elif c != self.image_channels + n:
            raise TumorSegError(
                f"click-guided model expects {self.image_channels} image channels "
                f"(+{n} prompt channels), got {c}")
        return self.net(x)


def build_click_guided(builder, in_channels: int, encoding: ClickEncoding, **kwargs) -> ClickGuided:
    """Build a registry model with the prompt channels added to its first layer."""
    net = builder(in_channels=int(in_channels) + encoding.n_channels, **kwargs)
    return ClickGuided(net, encoding, int(in_channels))
