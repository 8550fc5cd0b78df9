"""BraTS conventions in one place: region names, label conventions, region colours.

The GLIMS paper (seed 004) trains on three nested regions, WT ⊇ TC ⊇ ET (whole tumour,
tumour core, enhancing tumour). Ground truth comes as integer label maps whose values
mean different things from one BraTS edition to the next; a *convention* says which label
values make each region:

* ``brats``: BraTS 2013 OTMultiClass (1 necrosis, 2 oedema, 3 non-enhancing tumour,
  4 enhancing tumour) and BraTS 2017-2021 (1 NCR/NET, 2 ED, 4 ET; 3 unused): both give
  WT = {1,2,3,4}, TC = {1,3,4}, ET = {4}.
* ``brats2023``: 1 NCR, 2 ED, 3 ET.
* ``brats2012``: truth {0, 1 oedema, 2 active tumour}. 2012 does not separate the
  enhancing part from the core, so ET is a copy of TC (documented approximation).
* ``regionmap``: the label map this plugin writes from predicted regions (1 oedema =
  WT - TC, 2 necrotic / non-enhancing core = TC - ET, 3 enhancing = ET), so a corrected
  prediction turns back into the same regions.
"""

from __future__ import annotations

import numpy as np

from napari_tumorseg.errors import TumorSegError

REGION_NAMES = ("WT", "TC", "ET")

#: Label values of the map built from predicted regions (convention ``regionmap``).
EDEMA, CORE, ENHANCING = 1, 2, 3

CONVENTIONS: dict[str, dict[str, tuple[int, ...]]] = {
    "brats": {"WT": (1, 2, 3, 4), "TC": (1, 3, 4), "ET": (4,)},
    "brats2023": {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)},
    "brats2012": {"WT": (1, 2), "TC": (2,), "ET": (2,)},
    "regionmap": {"WT": (EDEMA, CORE, ENHANCING), "TC": (CORE, ENHANCING), "ET": (ENHANCING,)},
}

#: Names of the region-map label values, background included.
REGION_LABEL_NAMES: dict[int, str] = {
    0: "background",
    EDEMA: "edema (WT - TC)",
    CORE: "necrotic / non-enhancing core (TC - ET)",
    ENHANCING: "enhancing tumour (ET)",
}

#: RGBA in 0-1 as napari's DirectLabelColormap takes it (``None``: any other value).
#: The common BraTS figures' colours: oedema green, core red, enhancing yellow.
REGION_COLORS: dict[int | None, tuple[float, float, float, float]] = {
    None: (0.0, 0.0, 0.0, 0.0),
    0: (0.0, 0.0, 0.0, 0.0),
    EDEMA: (0.0, 0.8, 0.2, 1.0),
    CORE: (0.9, 0.1, 0.1, 1.0),
    ENHANCING: (1.0, 0.9, 0.0, 1.0),
}


def labels_to_regions(labels, convention: str = "brats") -> np.ndarray:
    """(3, ...) bool WT / TC / ET masks from an integer label map of ``convention``."""
    try:
        conv = CONVENTIONS[convention]
    except KeyError:
        known = ", ".join(CONVENTIONS)
        raise TumorSegError(f"unknown region convention {convention!r}; known: {known}") from None
    lab = np.asarray(labels)
    return np.stack([np.isin(lab, conv[name]) for name in REGION_NAMES])


def regions_to_labels(regions, threshold: float = 0.5) -> np.ndarray:
    """A ``regionmap`` label map (uint8) from (3, ...) WT / TC / ET probabilities or masks.

    Painted in nesting order WT -> 1, TC -> 2, ET -> 3, so the inner region wins where a
    model's channels disagree (an ET voxel outside its TC is still enhancing).
    """
    p = np.asarray(regions)
    if p.ndim < 2 or p.shape[0] != 3:
        raise TumorSegError(f"expected 3 region channels (WT, TC, ET) first, got shape {p.shape}")
    check_threshold(threshold)
    out = np.zeros(p.shape[1:], np.uint8)
    out[p[0] > threshold] = EDEMA
    out[p[1] > threshold] = CORE
    out[p[2] > threshold] = ENHANCING
    return out


def guess_convention(label_values) -> str:
    """``brats2012`` when the labels are a subset of {0, 1, 2}, else ``brats``."""
    vals = {int(v) for v in label_values}
    return "brats2012" if vals <= {0, 1, 2} else "brats"


def check_threshold(threshold: float) -> None:
    if not 0.0 <= float(threshold) <= 1.0:
        raise TumorSegError(f"threshold must be within 0-1, got {threshold}")
