"""The click robot: a simulated user who clicks where the current mask is most wrong.

Protocol (the one RITM, DeepGrow and nnInteractive's evaluations use, made exact here):

* Error regions are the connected components (face connectivity: 6 neighbours in 3D, 4 in
  2D) of the missed voxels (ground truth, not in the mask) and of the false-positive voxels
  (in the mask, not ground truth), each set on its own.
* The next click goes into the largest error region by voxel count (= by volume, the grid is
  uniform). A tie goes to the missed region, then to the region whose first voxel comes first
  in C order. It is positive when the region was missed, negative when it is a false
  positive.
* The click lies at the region's "centre": the voxel of largest Euclidean distance, in mm
  (with the grid spacing), to the nearest voxel outside the region, the image border counted
  as outside (along axes longer than one voxel). Ties go to the first such voxel in C order.
* The first click (no prior) is the deepest point of the ground truth by the same rule,
  applied to the whole ground truth. With a prior mask the first click already follows the
  error rule, and the prior's own Dice is reported as ``dice_prior``.
* Each call to the engine gets every click so far and the original prior: the result after
  k clicks is a pure function of the image, the ground truth and k.
* When the mask equals the ground truth no error is left to click: the robot stops early;
  ``dice_at(k)`` for k past the last click is the last Dice (the user would stop clicking).

NoC@t (clicks needed to reach Dice >= t) is the smallest k with ``dice_per_click[k-1] >= t``;
when the Dice never reaches t within ``max_clicks`` it is **capped at max_clicks** (the
convention of the NoC@85/90 literature, e.g. RITM's NoC@90 capped at 20), and
``noc_reached[t]`` is False so a capped value is never mistaken for a success at click N.
A prior mask already at t needs 0 clicks.
Dice follows :mod:`napari_tumorseg.metrics` (both empty = 1).

Every answer is held to the never-worse rule (:mod:`napari_tumorseg.interactive.guard`),
the one the dock's answers are held to. A click that still lowers the Dice by more than
:data:`~napari_tumorseg.interactive.guard.DROP` (against the Dice before it: the prior's, or
0 before the first click) is a **drop**; ``drops`` lists them and ``as_dict`` counts them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
from scipy import ndimage

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.interactive.engines import segment_with_prompts
from napari_tumorseg.interactive.guard import DROP
from napari_tumorseg.interactive.prompts import Prompts
from napari_tumorseg.metrics import confusion_counts, metrics_from_counts

NOC_THRESHOLDS = (0.80, 0.85, 0.90)


@dataclass
class RobotResult:
    engine: str
    max_clicks: int
    dice_per_click: list[float] = field(default_factory=list)
    seconds_per_click: list[float] = field(default_factory=list)
    clicks: list[tuple[tuple[int, int, int], bool]] = field(default_factory=list)
    dice_prior: float | None = None
    target: str = "lesion"
    #: (click number, Dice before, Dice after) of every click that lowered Dice by > DROP
    drops: list[tuple[int, float, float]] = field(default_factory=list)

    def dice_at(self, k: int) -> float:
        """Dice after k clicks (k >= 1); past an early stop, the last Dice."""
        if k < 1:
            raise ValueError("k counts clicks from 1")
        if not self.dice_per_click:
            return float("nan")
        return self.dice_per_click[min(k, len(self.dice_per_click)) - 1]

    def noc(self, threshold: float) -> int:
        if self.dice_prior is not None and self.dice_prior >= threshold:
            return 0
        for k, d in enumerate(self.dice_per_click, start=1):
            if d >= threshold:
                return k
        return self.max_clicks

    def noc_reached(self, threshold: float) -> bool:
        if self.dice_prior is not None and self.dice_prior >= threshold:
            return True
        return any(d >= threshold for d in self.dice_per_click)

    def as_dict(self) -> dict:
        keys = [str(round(t * 100)) for t in NOC_THRESHOLDS]
        return {
            "engine": self.engine,
            "max_clicks": self.max_clicks,
            "dice_per_click": [float(d) for d in self.dice_per_click],
            "noc": {k: self.noc(t) for k, t in zip(keys, NOC_THRESHOLDS)},
            "noc_reached": {k: self.noc_reached(t) for k, t in zip(keys, NOC_THRESHOLDS)},
            "noc_cap": "max_clicks (a threshold never reached counts as max_clicks)",
            "seconds_per_click": [float(s) for s in self.seconds_per_click],
            "clicks": [{"zyx": list(map(int, p)), "positive": bool(pos)} for p, pos in self.clicks],
            "dice_prior": self.dice_prior,
            "target": self.target,
            "drop_threshold": DROP,
            "n_drops": len(self.drops),
            "drops": [{"click": k, "dice_before": float(a), "dice_after": float(b)} for k, a, b in self.drops],
        }


@dataclass
class RobotProgress:
    """One click done: what the dock / CLI show while the robot runs."""

    click: int
    max_clicks: int
    dice: float
    seconds: float
    point: tuple[int, int, int]
    positive: bool
    mask: np.ndarray | None = None  # the answer after this click (bool, the image's grid)


def dice(mask: np.ndarray, gt: np.ndarray) -> float:
    return float(metrics_from_counts(*confusion_counts(mask, gt))["dice"])


def depth_map(region: np.ndarray, spacing) -> np.ndarray:
    """Distance (mm) of every voxel of ``region`` to the nearest voxel outside it or to the
    border of the array, in ``region``'s shape (0 outside).

    Axes of length 1 (the z of a 2D image) are left out: a single slice has no border along z.
    """
    region = np.asarray(region, bool)
    spacing = tuple(float(s) for s in spacing)
    axes = [k for k, n in enumerate(region.shape) if n > 1]
    flat = region.reshape([region.shape[k] for k in axes]) if axes else region.reshape(1)
    padded = np.pad(flat, 1, constant_values=False)
    dist = ndimage.distance_transform_edt(padded, sampling=[spacing[k] for k in axes] or None)
    return dist[(slice(1, -1),) * flat.ndim].reshape(region.shape)


def deepest_point(region: np.ndarray, spacing) -> tuple[int, ...]:
    """The voxel of ``region`` farthest (in mm) from everything outside it and the border."""
    region = np.asarray(region, bool)
    if not region.any():
        raise ValueError("deepest_point of an empty region")
    dist = depth_map(region, spacing)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(dist)), region.shape))


def next_click(mask: np.ndarray, gt: np.ndarray, spacing) -> tuple[tuple[int, int, int], bool] | None:
    """(point, positive) at the centre of the largest error region, or None when there is none."""
    mask, gt = np.asarray(mask, bool), np.asarray(gt, bool)
    best = None  # (size, rank, labels, index, positive)
    for rank, (err, positive) in enumerate(((gt & ~mask, True), (mask & ~gt, False))):
        if not err.any():
            continue
        labels, n = ndimage.label(err)
        sizes = np.bincount(labels.ravel())[1:]
        # Labels are numbered in C order of their first voxel, so argmax keeps that tie-break.
        idx = int(np.argmax(sizes))
        if best is None or sizes[idx] > best[0]:
            best = (int(sizes[idx]), rank, labels, idx + 1, positive)
    if best is None:
        return None
    _, _, labels, idx, positive = best
    return deepest_point(labels == idx, spacing), positive


def _check_inputs(image: np.ndarray, spacing, gt: np.ndarray, prior) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4:
        raise TumorSegError(f"the image must be (c, z, y, x) or (z, y, x); got shape {image.shape}")
    gt = np.asarray(gt) > 0
    if gt.ndim == 2:
        gt = gt[None]
    if gt.shape != image.shape[1:]:
        raise TumorSegError(
            f"image and ground truth are on different grids: {image.shape[1:]} vs {gt.shape} voxels")
    if len(tuple(spacing)) != 3:
        raise TumorSegError("spacing must be (z, y, x) in mm")
    if not gt.any():
        raise TumorSegError("the ground truth is empty: the robot needs an object to click on")
    if prior is not None and np.shape(prior) != gt.shape:
        raise TumorSegError(f"the prior mask has shape {np.shape(prior)}, the image {gt.shape}")
    return image.astype(np.float32, copy=False), gt


def iter_clicks(engine, image, spacing, gt, max_clicks: int = 10, prior=None, cancel=None,
                target: str = "lesion", channel_names=None) -> Iterator[RobotProgress | RobotResult]:
    """Run the robot, yielding a :class:`RobotProgress` per click and the :class:`RobotResult` last.

    ``target`` and ``channel_names`` go to :func:`segment_with_prompts` as the dock's do
    (``gt`` is already the target's ground truth)."""
    if max_clicks < 1:
        raise TumorSegError("max_clicks must be at least 1")
    image, gt = _check_inputs(image, spacing, gt, prior)
    spacing = tuple(float(s) for s in spacing)
    prior_mask = None if prior is None else np.asarray(prior) > 0
    result = RobotResult(engine=getattr(engine, "name", type(engine).__name__), max_clicks=max_clicks,
                         target=target)
    prompts = Prompts()
    current = np.zeros(gt.shape, bool)
    last_dice = 0.0
    if prior_mask is not None:
        result.dice_prior = last_dice = dice(prior_mask, gt)
        current = prior_mask
    for k in range(1, max_clicks + 1):
        if prior_mask is None and k == 1:
            click = (deepest_point(gt, spacing), True)
        else:
            click = next_click(current, gt, spacing)
            if click is None:
                break
        point, positive = click
        previous = (prompts, current)
        prompts = prompts.with_click(point, positive)
        t0 = time.perf_counter()
        mask = segment_with_prompts(engine, image, spacing, prompts, prior=prior_mask, cancel=cancel,
                                    previous=previous, target=target, channel_names=channel_names)
        seconds = time.perf_counter() - t0
        current = np.asarray(mask, bool).reshape(gt.shape)
        d = dice(current, gt)
        if d < last_dice - DROP:
            result.drops.append((k, last_dice, d))
        last_dice = d
        result.dice_per_click.append(d)
        result.seconds_per_click.append(seconds)
        result.clicks.append((point, positive))
        yield RobotProgress(k, max_clicks, d, seconds, point, positive, current)
        if cancel is not None and cancel():
            break
    yield result


def simulate_clicks(engine, image, spacing, gt, max_clicks: int = 10, prior=None,
                    cancel=None, target: str = "lesion", channel_names=None) -> RobotResult:
    """The robot's whole run; ``iter_clicks`` is the same with progress on the way."""
    *_, result = iter_clicks(engine, image, spacing, gt, max_clicks=max_clicks, prior=prior,
                             cancel=cancel, target=target, channel_names=channel_names)
    return result
