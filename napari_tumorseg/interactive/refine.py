"""Clicks on an existing mask (a model's prediction): add what it missed, remove what it got wrong.

Used for engines that cannot read a previous mask (the classic engine); a click-guided
network is given the prediction as its previous mask instead
(:func:`napari_tumorseg.interactive.engines.segment_with_prompts`).

``refine_with_prompts`` keeps every voxel of the prior that no prompt speaks about:

* **Positive clicks outside the prior** (and a box, and "tumour" scribbles): the engine
  segments the object under them, with the negative clicks as background, and the result is
  added (union), within a ball around each click as large as the prior (its equivalent
  radius, at least 10 mm and a tenth of the field of view). Positive clicks already inside
  the prior add nothing.
* **Negative clicks on the mask**: the engine segments the object *under the negative click*
  (the click as its seed, the positive clicks as background), restricted to the connected
  component of the mask that the click hits. When that component holds no positive click,
  the engine's region covers at least ``whole_fraction`` of it and the click lies in its
  middle (at least half as deep in it as its deepest point), the component is a false
  positive and goes whole; otherwise (it also holds positives, it is much larger than the
  thing clicked, or the click is on its edge) only the engine's region near the click goes - "the part around the
  click": within twice the click's depth inside the mask (plus a voxel) of it, so a click
  on a rim or a leak takes that rim or leak and not the tumour it hangs on.
  Negative clicks off the mask change nothing. "Not tumour" scribbles are cleared.

At most two engine calls per update (one for every addition, one for every removal), so an
update costs about as much as a plain engine update however many clicks have piled up.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_tumorseg.interactive.prompts import Cancelled, Prompts

# 26/8-connectivity: a component the user sees as one blob is one, even through corners.
_FULL = np.ones((3, 3, 3), bool)
_FULL_2D = np.zeros((3, 3, 3), bool)
_FULL_2D[1] = True


def _hits(mask: np.ndarray, points) -> list[tuple[int, int, int]]:
    out = []
    for p in np.asarray(points, float).reshape(-1, 3):
        q = tuple(int(np.floor(v + 0.5)) for v in p)
        if all(0 <= a < s for a, s in zip(q, mask.shape)) and mask[q]:
            out.append(q)
    return out


def _depths(comp, spacing):
    """(depth_at(q), deepest): distances (mm) to the outside of ``comp``, computed once on its
    bounding box; axes of length 1 (the z of a 2D image) are no border."""
    box = ndimage.find_objects(comp.astype(np.uint8))[0]
    keep = [k for k in range(3) if comp.shape[k] > 1]
    sub = comp[box].reshape([comp[box].shape[k] for k in keep])
    d = ndimage.distance_transform_edt(np.pad(sub, 1), sampling=[spacing[k] for k in keep])

    def depth_at(q) -> float:
        return float(d[tuple(q[k] - box[k].start + 1 for k in keep)])
    return depth_at, float(d.max())


def _depth(comp, q, spacing) -> float:
    """Distance (mm) from q to the outside of ``comp``, on its bounding box; axes of length 1
    (the z of a 2D image) are no border."""
    depth_at, _ = _depths(comp, spacing)
    return depth_at(q)


def _central(comp, qs, spacing, share: float = 0.5) -> bool:
    """Whether one of the clicks ``qs`` lies in the middle of ``comp``: at least ``share`` of
    its deepest point's depth inside it. A "not tumour" click in the middle of a blob says
    the blob is wrong; one near its edge says the edge is (a prediction's rim drawn too
    wide). Why: a learned engine asked for the object under a click on a prediction's rim
    answers with the whole tumour the rim hangs on, and the component went whole - one
    click on BraTS-GLI-00000's over-drawn oedema took the whole tumour from Dice 0.86 to 0."""
    depth_at, deepest = _depths(comp, spacing)
    return any(depth_at(q) >= share * deepest for q in qs)


def _clear_near(result, comp, part, q, spacing, cap: float = np.inf) -> None:
    """Clear ``part`` within 2 x (depth of q inside ``comp``) + one voxel of q, and within
    ``cap`` mm (half the way to the nearest positive click): a round cut around the click,
    never a straight one."""
    r = min(2.0 * _depth(comp, q, spacing) + max(spacing), max(cap, max(spacing)))
    win = tuple(slice(max(0, c - int(np.ceil(r / sp))), min(n, c + int(np.ceil(r / sp)) + 1))
                for c, sp, n in zip(q, spacing, result.shape))
    grids = np.ogrid[win]
    ball = sum(((g - c) * sp) ** 2 for g, c, sp in zip(grids, q, spacing)) <= r * r
    result[win] &= ~(part[win] & ball)


def _reach(mask, clicks, spacing, floor_mm: float = 10.0) -> np.ndarray:
    """Balls around the clicks, as large as the mask so far (its equivalent radius, at least
    ``floor_mm`` and a tenth of the field of view): what a click on a missed part may add. A faint click's region can leak
    through the whole crop (measured on BraTS: one click took Dice from 0.90 to 0.35); the
    part of a lesion a click misses is not larger than what was found already."""
    n = int(mask.sum())
    if mask.shape[0] > 1:
        r = (3.0 * n * float(np.prod(spacing)) / (4.0 * np.pi)) ** (1.0 / 3.0)
    else:
        r = (n * float(spacing[1] * spacing[2]) / np.pi) ** 0.5
    # A first answer can be a speck (a click on a dark core): a tenth of the field of view
    # lets the next click still add the lesion.
    extent = max(mask.shape[1] * spacing[1], mask.shape[2] * spacing[2])
    r = max(r, floor_mm, 0.1 * extent)
    out = np.zeros(mask.shape, bool)
    for p in clicks:
        q = [int(np.floor(v + 0.5)) for v in p]
        win = tuple(slice(max(0, c - int(np.ceil(r / sp))), min(n_, c + int(np.ceil(r / sp)) + 1))
                    for c, sp, n_ in zip(q, spacing, mask.shape))
        grids = np.ogrid[win]
        out[win] |= sum(((g - c) * sp) ** 2 for g, c, sp in zip(grids, q, spacing)) <= r * r
    return out


def _fresh(engine):
    """The engine's stateless entry point: refine's own calls must not look like the user's
    next prompt to an engine that remembers its last answer."""
    return getattr(engine, "segment_prompts", None) or (
        lambda image, spacing, prompts, cancel=None: engine.segment(image, spacing, prompts,
                                                                    prior=None, cancel=cancel))


def refine_with_prompts(prior, image, spacing, prompts: Prompts, engine, cancel=None,
                        whole_fraction: float = 0.5) -> np.ndarray:
    """The prior mask edited by the prompts (bool, same grid); the prior itself is not changed."""
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[None]
    prior = np.asarray(prior)
    grid = image.shape[1:]
    if prior.shape != grid and not (grid[0] == 1 and prior.shape == grid[1:]):
        raise ValueError(f"the prior mask {prior.shape} is not on the image grid {image.shape[1:]}")
    result = prior.astype(bool).reshape(image.shape[1:]).copy()
    spacing = tuple(float(s) for s in spacing)
    try:
        _edit(result, image, spacing, prompts, engine, cancel, whole_fraction)
    except Cancelled:
        # Superseded by a newer prompt: the caller drops this answer; the prior is intact.
        return np.asarray(prior).astype(bool).reshape(image.shape[1:]).copy()
    return result


def _edit(result, image, spacing, prompts, engine, cancel, whole_fraction) -> None:
    """``result`` (the prior's copy) edited in place by the prompts."""
    outside = [p for p in prompts.positive if not _hits(result, [p])]
    scr_fg = None
    scr_bg = None
    if prompts.scribbles is not None:
        scr = np.asarray(prompts.scribbles).reshape(result.shape)
        scr_fg = np.where((scr == 1) & ~result, 1, 0).astype(np.uint8)
        scr_bg = scr == 2
        if not scr_fg.any():
            scr_fg = None
    if outside or prompts.box is not None or scr_fg is not None:
        add = Prompts(positive=np.asarray(outside).reshape(-1, 3), negative=prompts.negative,
                      box=prompts.box, scribbles=scr_fg)
        region = np.asarray(_fresh(engine)(image, spacing, add, cancel=cancel), bool)
        if result.any() and outside and prompts.box is None and scr_fg is None:
            region &= _reach(result, outside, spacing)
        result |= region

    hits = _hits(result, prompts.negative)
    if hits:
        structure = _FULL if result.shape[0] > 1 else _FULL_2D
        labels, _ = ndimage.label(result, structure=structure)
        # The object under the negative clicks, as the engine sees it; positives are its
        # background so it does not run into the tumour the user marked.
        local = Prompts(positive=np.asarray(hits, float), negative=prompts.positive)
        region = np.asarray(_fresh(engine)(image, spacing, local, cancel=cancel), bool)
        positives = {int(labels[q]) for q in _hits(result, prompts.positive)}
        for lab in sorted({int(labels[q]) for q in hits}):
            comp = labels == lab
            part = region & comp
            for q in hits:
                if labels[q] == lab:
                    part[q] = True
            qs = [q for q in hits if labels[q] == lab]
            if (lab not in positives and part.sum() >= whole_fraction * comp.sum()
                    and _central(comp, qs, spacing)):
                result[comp] = False
                continue
            # The component also holds tumour the user marked: the engine's region there is
            # tumour-like on both sides, so only its part near the click goes - a ball twice
            # as deep as the click lies inside the mask (a rim's thickness, a leak's width).
            # Never past half the way to a positive click: within the ball the cut is round;
            # the engine's region, bounded by its crop, could end on a straight face.
            pos = np.asarray(prompts.positive, float).reshape(-1, 3)
            for q in hits:
                if labels[q] == lab:
                    cap = (0.5 * float(np.sqrt((((pos - q) * spacing) ** 2).sum(axis=1)).min())
                           if len(pos) else np.inf)
                    _clear_near(result, comp, part, q, spacing, cap)

    if scr_bg is not None:
        result[scr_bg] = False
    # A positive click is the user's word: no removal takes its voxel, so the component it
    # is in keeps counting as marked tumour for the clicks that follow.
    for q in _hits(np.ones(result.shape, bool), prompts.positive):
        result[q] = True
