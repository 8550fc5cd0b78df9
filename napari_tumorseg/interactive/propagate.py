"""Slice-to-slice propagation: a 2D click-guided network segments a 3D object.

The mask on one slice prompts the next one: its deepest point becomes a positive click
and the mask itself the previous-mask channel (micro-sam and DeepEdit do the same), until
the object ends. A propagated mask keeps only the parts connected to the mask it came
from, so a second lesion in the next slice does not join in. The object "ends" where the
mask vanishes or stops touching the previous one, or where it suddenly grows several-fold
(the network leaking into the brain rather than following the lesion).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

from napari_tumorseg.interactive.simulate import deep_point

# (z, positive (n, 2) y/x points, negative (n, 2) points, previous mask or None) per slice.
SliceRequest = tuple[int, np.ndarray, np.ndarray, "np.ndarray | None"]
SliceFn = Callable[[Sequence[SliceRequest]], Sequence[np.ndarray]]


def connected_to(mask: np.ndarray, ref: np.ndarray, grow: int = 2) -> np.ndarray:
    """The components of ``mask`` that touch ``ref`` dilated by ``grow`` pixels."""
    if not mask.any():
        return mask
    lab, n = ndimage.label(mask)
    near = ndimage.binary_dilation(ref, iterations=grow) if grow else ref
    keep = np.unique(lab[near & mask])
    keep = keep[keep > 0]
    return np.isin(lab, keep)


def propagate(n_slices: int, seeds: dict[int, np.ndarray], segment_slices: SliceFn,
              spacing_yx: Sequence[float], min_area_px: int = 4, max_growth: float = 4.0,
              cancel: Callable[[], bool] | None = None) -> dict[int, np.ndarray] | None:
    """Extend the seed masks (slice index -> bool (y, x)) up and down the volume.

    ``segment_slices`` runs the network on a batch of requests (every open front advances
    by one slice per call, so the fronts share one forward pass). Returns slice -> mask for
    every slice reached (seeds included), or None when ``cancel`` asked to stop.
    """
    out = {int(z): np.asarray(m, bool) for z, m in seeds.items()}
    fronts = [(z, d) for z, m in out.items() if m.any() for d in (-1, 1)]
    while fronts:
        if cancel is not None and cancel():
            return None
        todo = []
        for z, d in fronts:
            nz = z + d
            if 0 <= nz < n_slices and nz not in out:
                prev = out[z]
                p = deep_point(prev, spacing_yx)
                todo.append((nz, d, prev, p))
        if not todo:
            break
        masks = segment_slices([(nz, p[None].astype(float), np.zeros((0, 2)), prev)
                                for nz, _, prev, p in todo])
        fronts = []
        for (nz, d, prev, _), m in zip(todo, masks):
            m = connected_to(np.asarray(m, bool), prev)
            area, prev_area = int(m.sum()), int(prev.sum())
            if area < min_area_px or area > max_growth * prev_area + 100:
                continue
            if nz in out:  # two fronts met on this slice in the same step
                out[nz] = out[nz] | m
                continue
            out[nz] = m
            fronts.append((nz, d))
    return out
