"""Recognising an array seen before by its content, not by its Python identity.

The docks build a model's input anew on every call (the case's sequences stacked into a new
array), so a cache keyed by ``id`` never hits there. The key here is the shape, the dtype and
the sums of three regular samples of the values (about 12 000 values whatever the array's
size): two inputs that differ only between the samples get the same key, and an edit that
small moves a whole-volume normalisation by no more than a rounding error.
"""

from __future__ import annotations

import numpy as np


def content_key(image: np.ndarray) -> tuple:
    image = np.asarray(image)
    flat = image.reshape(-1)
    step = max(1, flat.size // 4096)
    probes = (flat[::step], flat[step // 2::step], flat[-4096:])
    return (image.shape, str(image.dtype)) + tuple(float(np.asarray(p, np.float64).sum()) for p in probes)
