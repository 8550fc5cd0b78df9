"""The user's edits of a label map, and the rules that keep anything derived off them.

A radiologist's brush stroke, eraser stroke, fill, accepted click segmentation, removed
component or filled hole is the one thing in a session that cannot be recomputed. Derived
writes — a threshold moved on cached probabilities, a re-run prediction, an accepted preview
— therefore go through the rules here, Qt-free and tested headless; the docks only call them:

* :class:`EditLedger` records which voxels the user set by hand (and whether any of them is
  not yet saved anywhere);
* :func:`merge_derived` rebuilds the derived voxels and leaves the user's alone;
* :func:`accept_into` writes an accepted mask under one label value without overwriting
  another label's voxels unless asked;
* :func:`result_problem` says when a result is empty or the whole region (CLI and dock).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_tumorseg.errors import TumorSegError

#: A result with at least this fraction of the predicted voxels labelled is reported as
#: "the whole volume": a model that does not suit the scan, or a threshold far too low.
WHOLE_FRACTION = 0.9


class EditLedger:
    """Voxels of one label map that the user set by hand, and the unsaved state.

    A voxel once edited stays the user's, even after an undo: the ledger errs on the side
    of keeping (an undone stroke's voxels keep the value the undo restored, and derived
    rebuilds leave them alone) rather than let a slider rewrite what a person touched.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.mask = np.zeros(shape, dtype=bool)
        #: Bumped by every edit; the auto-saver compares it with the generation it wrote.
        self.generation = 0
        self.saved_generation = 0

    @property
    def any(self) -> bool:
        return bool(self.generation)

    @property
    def count(self) -> int:
        return int(np.count_nonzero(self.mask))

    @property
    def unsaved(self) -> bool:
        return self.generation != self.saved_generation

    def mark(self, where) -> None:
        """Record an edit at ``where``: a fancy index (tuple of index arrays), a tuple of
        slices, or a boolean array of the map's shape."""
        if isinstance(where, np.ndarray) and where.dtype == bool:
            if where.shape != self.mask.shape:
                raise TumorSegError(f"edit mask {where.shape} differs from the labels {self.mask.shape}")
            self.mask |= where
        else:
            self.mask[where] = True
        self.generation += 1

    def mark_box(self, box: tuple, inside: np.ndarray | None) -> None:
        """An edit confined to ``box`` (a tuple of slices); ``inside`` selects within it (None: all)."""
        if inside is None:
            self.mask[box] = True
        else:
            region = self.mask[box]
            region |= np.asarray(inside, bool)
            self.mask[box] = region
        self.generation += 1

    def mark_saved(self, generation: int | None = None) -> None:
        """Everything up to ``generation`` (default: now) is written somewhere safe."""
        self.saved_generation = self.generation if generation is None else generation

    def resize(self, shape: tuple[int, ...]) -> None:
        """The map was replaced by one of another shape: nothing of the old ledger applies."""
        if tuple(shape) != self.mask.shape:
            self.mask = np.zeros(shape, dtype=bool)


def merge_derived(current: np.ndarray, derived: np.ndarray, edited: np.ndarray | None,
                  region: tuple | None = None) -> tuple[np.ndarray, int]:
    """``derived`` written over ``current`` except where the user edited.

    ``region`` (a tuple of slices) limits the rebuild, as a prediction of a slice range does;
    ``derived`` then has the region's shape. Returns the new map (a copy) and how many
    voxels kept the user's value although the derived one differed.
    """
    current = np.asarray(current)
    out = current.copy()
    region = region if region is not None else tuple(slice(None) for _ in current.shape)
    target = out[region]
    derived = np.asarray(derived).astype(current.dtype, copy=False)
    if derived.shape != target.shape:
        raise TumorSegError(f"derived labels {derived.shape} do not fit the layer's {target.shape}")
    if edited is None:
        out[region] = derived
        return out, 0
    keep = np.asarray(edited, bool)[region]
    kept = int(np.count_nonzero(keep & (derived != target)))
    out[region] = np.where(keep, target, derived)
    return out, kept


@dataclass
class AcceptResult:
    labels: np.ndarray
    written: int  # voxels that now hold the value
    protected: int  # voxels of the mask left to another label


def accept_into(target: np.ndarray, mask: np.ndarray, value: int, *, replace: bool = False,
                overwrite_other: bool = False) -> AcceptResult:
    """Write an accepted ``mask`` into ``target`` under ``value``.

    * Other label values under the mask stay (another lesion, another region) unless
      ``overwrite_other``.
    * ``replace`` (refining a prediction): the mask is the new extent of the labels it
      refines — voxels outside it go to 0, kept voxels keep their class, new ones get
      ``value``.
    """
    target = np.asarray(target)
    mask = np.asarray(mask, bool)
    if mask.shape != target.shape:
        raise TumorSegError(f"the mask {mask.shape} is not on the labels' grid {target.shape}")
    if value < 0 or (np.issubdtype(target.dtype, np.integer) and value > np.iinfo(target.dtype).max):
        raise TumorSegError(f"value {value} does not fit the labels ({target.dtype})")
    new = target.copy()
    if replace:
        new[~mask & (target != 0)] = 0
        new[mask & (target == 0)] = value
        return AcceptResult(new, int(np.count_nonzero(mask)), 0)
    free = (target == 0) | (target == value)
    writable = mask if overwrite_other else mask & free
    new[writable] = value
    return AcceptResult(new, int(np.count_nonzero(writable)), int(np.count_nonzero(mask & ~writable)))


def result_problem(labelled: int, predicted: int, top_probability: float, threshold: float) -> str:
    """One sentence when a thresholded result is empty or covers (almost) the whole region
    that was predicted; "" when it looks like a lesion."""
    if labelled == 0:
        return (f"no tumour above threshold {threshold:.2f} (highest probability {top_probability:.2f}): "
                "try a lower threshold")
    if predicted and labelled >= WHOLE_FRACTION * predicted:
        return (f"{labelled / predicted:.0%} of the predicted voxels are tumour at threshold {threshold:.2f}: "
                "try a higher threshold, or check that the model suits this scan")
    return ""
