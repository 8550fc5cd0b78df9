"""The on-disk dtype of an array: label maps arrive as int64 (NumPy's and napari's default),
which nibabel refuses without an explicit type, ImageJ cannot open and 3D Slicer's segment
editor stores at eight times the size. Each writer narrows them to the first type of its own
preference list that holds every value."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def file_dtype(data: np.ndarray, preference: Sequence[type], too_wide: type | None = None) -> np.ndarray:
    """``data`` in the type a file should hold: bool as uint8, float16 as float32, 64-bit
    integers as the first of ``preference`` whose range holds them (else ``too_wide`` when
    given, else unchanged), anything else unchanged."""
    if data.dtype == bool:
        return data.astype(np.uint8)
    if data.dtype.kind in "iu" and data.dtype.itemsize == 8:  # either byte order
        lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
        for dtype in preference:
            info = np.iinfo(dtype)
            if info.min <= lo and hi <= info.max:
                return data.astype(dtype)
        return data.astype(too_wide) if too_wide is not None else data
    if data.dtype == np.float16:
        return data.astype(np.float32)
    return data
