"""Slice-to-slice propagation: a 2D click-guided network segments a 3D object.

The mask on one slice prompts the next one as its previous-mask channel, with no click:
click-guided training shows the network such samples (the ground truth shifted, grown or
shrunk, see :func:`napari_tumorseg.interactive.simulate.neighbour_like`), so it fits the
neighbour's mask to this slice's object, or drops it where the object has ended. (A
positive click at the neighbour's deepest point, the other choice, would force tumour
onto the first slice past the object's end: the network learned that a positive click is
always inside.) Propagation goes on until the object ends. A propagated mask keeps only the parts connected to the mask it came
from, so a second lesion in the next slice does not join in. The object "ends" where the
mask vanishes or stops touching the previous one, or where it suddenly grows several-fold
(the network leaking into the brain rather than following the lesion).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

# (z, positive (n, 2) y/x points, negative (n, 2) points, previous mask or None) per slice.
SliceRequest = tuple[int, np.ndarray, np.ndarray, "np.ndarray | None"]
SliceFn = Callable[[Sequence[SliceRequest]], Sequence[np.ndarray]]


def connected_to(mask: np.ndarray, ref: np.ndarray, grow: int = 2) -> np.ndarray:
    """The components of ``mask`` that touch ``ref`` dilated by ``grow`` pixels."""
    if not mask.any():
        return mask
    lab, n = ndimage.label(mask)
    near = ndimage.binary_dilation(ref, iterations=grow) if grow else ref
    keep = np.zeros(n + 1, bool)
    keep[lab[near & mask]] = True
    keep[0] = False
    return keep[lab]


def _agree(a: np.ndarray, b: np.ndarray, iou: float = 0.97) -> bool:
    union = int((a | b).sum())
    return union == 0 or int((a & b).sum()) / union >= iou


def propagate(n_slices: int, seeds: dict[int, np.ndarray], segment_slices: SliceFn,
              previous: dict[int, np.ndarray] | None = None, min_area_px: int = 4,
              max_growth: float = 4.0, max_seed_ratio: float = 1.5, settle: int = 3,
              cancel: Callable[[], bool] | None = None) -> dict[int, np.ndarray] | None:
    """Extend the seed masks (slice index -> bool (y, x)) up and down the volume.

    ``segment_slices`` runs the network on a batch of requests (every open front advances
    by one slice per call, so the fronts share one forward pass). Returns slice -> mask for
    every slice to change (seeds included), or None when ``cancel`` asked to stop.

    ``previous`` (slice -> mask: the last answer, after a new click) makes the update
    incremental: a front stops where its mask has agreed with the previous one (IoU >= 0.97)
    on ``settle`` slices in a row, as the slices beyond would come out the same (one slice is
    not enough: near the click a too-long object still agrees with the new one); where a
    front finds the object ended, the previous answer's run of slices beyond is cleared, unless
    that run leads to a slice another front or seed still holds (between two clicked parts
    the object goes on: clearing there cut eleven slices out of a whole tumour).

    A front also ends where its mask outgrows ``max_seed_ratio`` times the largest seed
    (the clicked slices): a network that has not learned the case spreads over the brain
    slice after slice, while a lesion's cross-section seldom exceeds the one the user
    clicked by much (the first click goes to the deepest, widest part).
    """
    previous = previous or {}
    out = {int(z): np.asarray(m, bool) for z, m in seeds.items()}
    fronts = [(z, d, 0) for z, m in out.items() if m.any() for d in (-1, 1)]
    seed_area = max((int(m.sum()) for m in out.values()), default=0)
    ended = []
    while fronts:
        if cancel is not None and cancel():
            return None
        todo = []
        for z, d, agreed in fronts:
            nz = z + d
            if 0 <= nz < n_slices and nz not in out:
                todo.append((nz, d, out[z], agreed))
        if not todo:
            break
        masks = segment_slices([(nz, np.zeros((0, 2)), np.zeros((0, 2)), prev)
                                for nz, _, prev, _ in todo])
        fronts = []
        for (nz, d, prev, agreed), m in zip(todo, masks):
            m = connected_to(np.asarray(m, bool), prev)
            area, prev_area = int(m.sum()), int(prev.sum())
            if (area < min_area_px or area > max_growth * prev_area + 100
                    or area > max_seed_ratio * seed_area + 10):
                ended.append((nz, d))
                continue
            if nz in out:  # two fronts met on this slice in the same step
                out[nz] = out[nz] | m
                continue
            out[nz] = m
            old = previous.get(nz)
            agreed = agreed + 1 if old is not None and old.any() and _agree(m, old) else 0
            if agreed >= settle:
                continue  # from here on the previous answer stands
            fronts.append((nz, d, agreed))
    for z, d in ended:  # the object ends here now: so does the previous answer's run ...
        run = []
        while 0 <= z < n_slices and z not in out and z in previous and previous[z].any():
            run.append(z)
            z += d
        if 0 <= z < n_slices and z in out and out[z].any():
            continue  # ... unless the run leads to another part of the object still there
        for k in run:
            out[k] = np.zeros_like(previous[k])
    return out
