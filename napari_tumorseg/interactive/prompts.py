"""What the user said with the mouse, in voxel coordinates of the case grid.

Coordinates are (z, y, x) voxel indices (floats allowed) on the spatial grid of the image
being segmented; a 2D image is a volume with z == 1. Engines never see napari's world
coordinates: the dock converts them with the layer's ``world_to_data``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


def _points(value) -> np.ndarray:
    arr = np.asarray(value if value is not None else np.zeros((0, 3)), dtype=float)
    if arr.size == 0:
        return np.zeros((0, 3), float)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"click coordinates must be (n, 3) (z, y, x); got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("click coordinates must be finite")
    return arr


class Cancelled(Exception):
    """A newer prompt superseded this update (raised between stages, caught by the caller).

    Here, beside the prompts every engine and the refinement share, so neither engine
    module has to import the other for it."""


def check_cancel(cancel) -> None:
    if cancel is not None and cancel():
        raise Cancelled()


@dataclass(frozen=True)
class Prompts:
    """Positive / negative clicks, an optional box on one slice and optional scribbles.

    ``box`` is ``(z, y0, x0, y1, x1)`` in voxel indices (corners inclusive).
    ``scribbles`` has the spatial shape of the image: 1 = tumour, 2 = not tumour, 0 = unsaid.
    """

    positive: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    negative: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    box: tuple[float, float, float, float, float] | None = None
    scribbles: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "positive", _points(self.positive))
        object.__setattr__(self, "negative", _points(self.negative))
        if self.box is not None:
            box = tuple(float(v) for v in self.box)
            if len(box) != 5 or not all(np.isfinite(box)):
                raise ValueError("a box prompt is (z, y0, x0, y1, x1) with finite values")
            object.__setattr__(self, "box", box)

    @property
    def empty(self) -> bool:
        return (len(self.positive) == 0 and self.box is None
                and (self.scribbles is None or not np.any(self.scribbles == 1)))

    def with_click(self, point, positive: bool = True) -> "Prompts":
        """A copy with one more click (the click robot and tests build prompts this way)."""
        p = np.asarray(point, float).reshape(1, 3)
        if positive:
            return Prompts(np.vstack([self.positive, p]), self.negative, self.box, self.scribbles)
        return Prompts(self.positive, np.vstack([self.negative, p]), self.box, self.scribbles)


@runtime_checkable
class ClickEngine(Protocol):
    """Anything that turns prompts into a mask.

    ``image`` is (c, z, y, x) float32 in the case's channel order; ``spacing`` is (z, y, x)
    in mm; ``prior`` is an existing mask (a model's prediction, or the previous result) on the
    same grid, or None. The result is a bool (z, y, x) mask on the full grid. ``cancel`` is
    polled between stages so a newer prompt can supersede a running one.
    """

    name: str

    def segment(self, image: np.ndarray, spacing, prompts: Prompts, prior: np.ndarray | None = None,
                cancel=None) -> np.ndarray: ...
