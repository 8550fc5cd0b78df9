"""Checks every reader and the prediction core share, so bad input is one clear line.

Two failures here were silent before: NaN/Inf voxels thresholded to "no tumour" on their
slices (a clinician reads an empty result), and a zero, singular or NaN affine opened
with voxel size 0. Both are refused with the file named; nothing is guessed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_tumorseg.errors import ReadError, TumorSegError

# A voxel edge below this (mm) is a broken header, not a scanner (1 µm is 1000x finer than MRI).
MIN_SPACING_MM = 1e-3
MAX_SPACING_MM = 1e4


def source_name(volume) -> str:
    """The file a Volume came from (name only: paths may hold a patient's name in folder
    names, and messages travel), or its name when it was not read from a file."""
    source = getattr(volume, "source", None) or []
    return Path(source[0]).name if source else str(getattr(volume, "name", "input"))


def require_finite(data: np.ndarray, what: str) -> None:
    """Raise when ``data`` holds NaN/Inf: the model would turn them into NaN probabilities."""
    arr = np.asarray(data)
    if arr.dtype.kind not in "fc":
        return
    finite = np.isfinite(arr)
    if not finite.all():
        bad = int(arr.size - np.count_nonzero(finite))
        raise TumorSegError(
            f"{bad} voxels are NaN/Inf in {what}; replace them (e.g. with 0) before predicting"
        )


def check_geometry(spacing, affine, shape, what: str) -> None:
    """Refuse a grid no scanner produces: non-positive sizes, zero/NaN voxel size, a
    singular or non-finite affine. ``shape`` is the spatial (z, y, x) shape."""
    if any(int(s) <= 0 for s in shape):
        raise ReadError(f"{what}: image size {tuple(int(s) for s in shape)} has a zero or negative axis")
    sp = np.asarray(spacing, dtype=float)
    if not np.isfinite(sp).all() or (sp < MIN_SPACING_MM).any() or (sp > MAX_SPACING_MM).any():
        text = " x ".join(f"{v:g}" for v in sp)
        raise ReadError(f"{what}: voxel size {text} mm is not a real voxel size (broken header)")
    a = np.asarray(affine, dtype=float)
    if a.shape != (4, 4) or not np.isfinite(a).all():
        raise ReadError(f"{what}: the position/orientation matrix holds NaN/Inf (broken header)")
    m = a[:3, :3]
    norms = np.linalg.norm(m, axis=0)
    if (norms < MIN_SPACING_MM).any():
        raise ReadError(f"{what}: an axis of the position/orientation matrix is zero (broken header)")
    # Normalised columns: the volume spanned by the unit axes; ~0 means two axes coincide.
    if abs(np.linalg.det(m / norms)) < 1e-3:
        raise ReadError(f"{what}: the orientation axes are parallel, the matrix is singular (broken header)")
