"""The never-worse rule: what every engine's answer is held to before anyone sees it.

:func:`hold_to_clicks` runs on every engine's output inside
:func:`napari_tumorseg.interactive.engines.segment_with_prompts`, so the dock and the click
robot get the same guarantee, whatever the engine:

* **Every positive click lies inside the result**, in a component grown from it: where the
  engine's answer leaves a positive click out, a small ball around it (``seed_mm``, at
  least one voxel in-plane) is added, minus any negative click.
* **Every negative click lies outside the result**: its voxel is cleared (the engines
  already remove the region under it; this is the backstop).
* **A click changes the result near itself, not far away**: when the prompts are the
  previous ones plus new clicks (the dock's and the robot's usual case), only the changes
  in connected components that touch a new click are taken - voxels added where they touch
  a new positive click, voxels removed where they touch any new click (a negative click
  never adds) - and everywhere else the previous answer stays. What a new positive
  click adds to a non-empty answer lies within ``reach`` (4) x its distance to that answer
  (at least ``floor_mm``, 15 mm) of it. (Measured with the robot: 3 x / 10 mm slowed the
  tumour core by ~0.1 Dice over clicks 2-4; 5 x / 15 mm let a leak lower the whole tumour of
  BraTS2021_00002 by 0.052 at click 7; 4 x / 15 mm: 0.017.) An engine that
  re-solves the whole volume and loses a part of the tumour far from the click cannot take
  it away. Any other change of prompts (an undo, a new box or scribble) is a fresh answer,
  held to the click rules only.
* **Correcting a prediction** (``bound_removals``: a prior the clicks refine, which a
  network re-answers as its previous mask): a positive click only adds, and what a negative
  click removes lies within ``reach`` x its depth in the answer on screen (at least
  ``floor_mm``) of it. Why: asked with the starter's prediction of BraTS2021_00006's
  enhancing rim and a "not tumour" click on it, the click model's propagation found the rim
  "ended" and cleared every slice (Dice 0.85 -> 0.00); the removal touched the click, so the
  rule above let it through. Letting a removal reach further when it takes less than half the
  component it is in (tried) lost 0.17 Dice on a fold-2 case's core in one click. And what it
  removes lies no deeper in the answer than ``SHALLOW_REACH`` (2) x the click's own depth in it
  (at least 3 mm): a "not tumour" click in a thin over-drawn band peels the band, where the
  distance bound alone let the network take a 15 mm bite of the core under it (a core drawn
  2 mm too wide: 0.90 -> 0.84 -> 0.80 over two clicks; with the depth bound 0.90 -> 0.91; a
  click deep in a false-positive blob still takes the blob: benchmarks/RESULTS_clicks.md).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_tumorseg.editing import bounding_box
from napari_tumorseg.interactive.prompts import Prompts

#: A click that lowers Dice by more than this is a drop (the click robot counts them).
DROP = 0.05

_FULL = np.ones((3, 3, 3), bool)


def _voxels(points, shape) -> list[tuple[int, int, int]]:
    out = []
    for p in np.asarray(points, float).reshape(-1, 3):
        q = tuple(int(np.floor(v + 0.5)) for v in p)
        if all(0 <= a < s for a, s in zip(q, shape)):
            out.append(q)
    return out


def new_clicks(prompts: Prompts, before: Prompts) -> tuple[np.ndarray, np.ndarray] | None:
    """(positive, negative) clicks ``prompts`` adds to ``before``; None when ``prompts`` is not
    ``before`` plus clicks (a click removed, a box or scribbles changed)."""
    if prompts.box != before.box or (prompts.scribbles is None) != (before.scribbles is None):
        return None
    if prompts.scribbles is not None and not np.array_equal(prompts.scribbles, before.scribbles):
        return None
    out = []
    for new, old in ((prompts.positive, before.positive), (prompts.negative, before.negative)):
        if len(new) < len(old) or not np.array_equal(new[:len(old)], old):
            return None
        out.append(new[len(old):])
    return out[0], out[1]


def _ball(shape, q, radius_mm, spacing) -> tuple[tuple[slice, ...], np.ndarray]:
    """(window, ball in the window) of radius ``radius_mm`` around voxel ``q``; at least the
    voxel and its in-plane neighbours."""
    r = [max(1, int(np.floor(radius_mm / sp))) if n > 1 else 0 for sp, n in zip(spacing, shape)]
    win = tuple(slice(max(0, c - ri), min(n, c + ri + 1)) for c, ri, n in zip(q, r, shape))
    grids = np.ogrid[win]
    dist = sum(((g - c) / max(ri, 1e-9)) ** 2 if ri else (g - c) ** 2 * 1e9
               for g, c, ri in zip(grids, q, r))
    return win, dist <= 1.0


def _touching(change: np.ndarray, clicked) -> np.ndarray:
    """The connected components (26-connected) of ``change`` within a voxel of a click."""
    out = np.zeros(change.shape, bool)
    if not clicked or not change.any():
        return out
    # Labelled inside the change's bounding box: a click's change is small, the volume is
    # 9 M voxels (the whole-volume labelling was a tenth of a click's time).
    box = bounding_box(change)
    labels, n = ndimage.label(change[box], structure=_FULL)
    near = np.zeros(n + 1, bool)
    for q in clicked:
        win = tuple(slice(max(0, c - 1 - b.start), max(0, c + 2 - b.start)) for c, b in zip(q, box))
        near[labels[win]] = True
    near[0] = False
    out[box] = near[labels]
    return out


def _near(old, points, spacing, reach: float, floor_mm: float, inside: bool) -> np.ndarray:
    """Balls around ``points``, each ``reach`` x the point's distance (mm) to the surface of
    ``old`` (at least ``floor_mm``), that distance counted for points ``inside`` ``old`` (a
    negative click's depth in the answer) or outside it (a positive click's distance to it);
    0 for the others."""
    shape = old.shape
    out = np.zeros(shape, bool)
    # The distance from a click to the surface is to its nearest surface voxel: those few are
    # searched directly (a distance transform of the whole volume took ~1 s a click).
    where = None
    for q in _voxels(points, shape):
        dist_q = 0.0
        if bool(old[q]) == inside:
            if where is None:
                surface = old & ~ndimage.binary_erosion(old, structure=_FULL, border_value=0)
                where = np.argwhere(surface) * np.asarray(spacing, float)
            dist_q = float(np.sqrt(np.min(((where - np.asarray(q, float) * spacing) ** 2).sum(1))))
        r = max(floor_mm, reach * dist_q)
        win = tuple(slice(max(0, c - int(np.ceil(r / sp))), min(n, c + int(np.ceil(r / sp)) + 1))
                    for c, sp, n in zip(q, spacing, shape))
        grids = np.ogrid[win]
        out[win] |= sum(((g - c) * sp) ** 2 for g, c, sp in zip(grids, q, spacing)) <= r * r
    return out


#: A removal correcting a prior takes voxels no deeper in the answer than this many times the
#: click's own depth in it (at least SHALLOW_FLOOR_MM); None: no depth bound (module doc).
SHALLOW_REACH: float | None = 2.0
SHALLOW_FLOOR_MM = 3.0


def _shallow(old, lost, points, spacing, reach: float, floor_mm: float, margin_mm: float) -> np.ndarray:
    """``lost`` without the voxels deeper in ``old`` than ``reach`` x the deepest negative
    click's depth in it (at least ``floor_mm``). Depths are exact up to ``margin_mm``."""
    if not lost.any():
        return lost
    shape = old.shape
    clicks = [q for q in _voxels(points, shape) if old[q]]
    # The removal and the clicks, and round them the answer as far as a depth is wanted (a
    # distance transform of the whole volume would cost ~1 s a click).
    around = bounding_box(lost)
    lo, hi = np.array([b.start for b in around]), np.array([b.stop for b in around])
    if clicks:
        lo, hi = np.minimum(lo, np.min(clicks, axis=0)), np.maximum(hi, np.max(clicks, axis=0) + 1)
    margin = [int(np.ceil(margin_mm / sp)) for sp in spacing]
    box = tuple(slice(max(0, int(a) - m), min(n, int(b) + m)) for a, b, m, n in zip(lo, hi, margin, shape))
    sub = np.pad(old[box], 1, constant_values=False)
    depth = ndimage.distance_transform_edt(sub, sampling=spacing)[1:-1, 1:-1, 1:-1]
    start = np.array([b.start for b in box])
    deepest = max((float(depth[tuple(np.asarray(q) - start)]) for q in clicks), default=0.0)
    limit = max(floor_mm, reach * deepest)
    out = lost.copy()
    out[box] &= depth <= limit
    return out


def hold_to_clicks(mask, prompts: Prompts, spacing, previous: tuple[Prompts, np.ndarray] | None = None,
                   seed_mm: float = 2.0, reach: float = 4.0, floor_mm: float = 15.0,
                   bound_removals: bool = False) -> np.ndarray:
    """``mask`` (an engine's answer to ``prompts``) held to the never-worse rule (module doc).

    ``previous`` is (prompts, mask) of the answer on screen before these prompts, or None.
    Returns a new bool array on ``mask``'s grid.
    """
    mask = np.asarray(mask, bool)
    shape = mask.shape
    spacing = tuple(float(s) for s in spacing)
    result = mask.copy()
    if previous is not None:
        before, old = previous
        old = np.asarray(old, bool).reshape(shape) if old is not None else np.zeros(shape, bool)
        added = new_clicks(prompts, before)
        if added is not None and (len(added[0]) or len(added[1])):
            # Voxels the engine added count only where they touch a new positive click,
            # voxels it removed where they touch any new click (a negative click never adds).
            gained = _touching(mask & ~old, _voxels(added[0], shape))
            if old.any() and len(added[0]):
                # What a new positive click adds stays within ``reach`` x its distance to the
                # answer on screen (the robot and a user click the middle of what is
                # missing, so that distance is about the missing part's radius) of it: a
                # leak through the crop cannot come with it.
                gained &= _near(old, added[0], spacing, reach, floor_mm, inside=False)
            if bound_removals:
                # Correcting a prediction: only a negative click removes, and only near
                # itself (see the module doc).
                lost = _touching(old & ~mask, _voxels(added[1], shape))
                if lost.any():
                    lost &= _near(old, added[1], spacing, reach, floor_mm, inside=True)
                    if SHALLOW_REACH is not None:
                        lost = _shallow(old, lost, added[1], spacing, SHALLOW_REACH, SHALLOW_FLOOR_MM,
                                        2 * floor_mm)
            else:
                lost = _touching(old & ~mask, _voxels(np.vstack([added[0], added[1]]), shape))
            result = (old | gained) & ~lost
    negatives = _voxels(prompts.negative, shape)
    for q in negatives:
        result[q] = False
    for q in _voxels(prompts.positive, shape):
        if result[q]:
            continue
        win, ball = _ball(shape, q, seed_mm, spacing)
        result[win] |= ball
        for n in negatives:
            result[n] = False
        result[q] = True
    return result
