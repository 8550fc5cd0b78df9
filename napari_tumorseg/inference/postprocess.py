"""What a whole predicted mask loses before it becomes labels, chosen per model on its own
validation cases (Qt-free).

A one-object model (``binary``, a 2-class ``multiclass``) can keep only the largest
connected component of its mask. Whether that helps depends on the model and the data, so
it is decided the way nnU-Net decides it (Isensee et al. 2021): at the end of training the
best checkpoint segments its validation cases, and the rule is kept only when it raises
their mean Dice. The choice, with both Dice values, is stored in the checkpoint
(``extra["postprocessing"]``); :class:`~napari_tumorseg.inference.predict.Predictor`
applies it, the CLI's ``--keep-all-components`` and the Predict dock's box turn it off.

Measured (2026-12-03): ``tumorseg train --data brats2013_deepmedic --max-minutes 8``
gave validation Dice 0.889 / 0.928 raw and 0.897 / 0.934 largest-only on its two 2013
validation patients; on the four other-year cases (never seen, never used for the choice)
the rule took whole tumour from 0.787 to 0.848 — the 2023 case's bright cortex on FLAIR,
predicted apart from the tumour, from 0.641 to 0.834.

Region models (WT / TC / ET) have their own rule, oedema without a core
(:func:`napari_tumorseg.brats.drop_coreless_components`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

NONE = "none"
LARGEST = "largest_component"
RULES = (NONE, LARGEST)
#: What each rule removes, as the dock's box and the CLI say it.
DESCRIPTIONS = {LARGEST: "components apart from the largest (chosen on validation)"}


def largest_component(mask) -> tuple[np.ndarray, int]:
    """The largest connected component of a bool mask, and how many others were dropped.
    Full connectivity: 26-connected in a volume, 8 in a (1, y, x) image (no slice beside it)."""
    m = np.asarray(mask, bool)
    if not m.any():
        return m.copy(), 0
    lab, n = ndi.label(m, structure=np.ones((3,) * m.ndim, bool))
    if n <= 1:
        return m.copy(), 0
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes)), n - 1


def apply_rule(labels, rule: str | None) -> tuple[np.ndarray, int]:
    """Labels (uint8, 0 background) after ``rule``; and how many components went."""
    lab = np.asarray(labels)
    if rule in (None, NONE):
        return lab, 0
    if rule != LARGEST:
        raise ValueError(f"unknown post-processing rule {rule!r}; known: {', '.join(RULES)}")
    keep, dropped = largest_component(lab > 0)
    return np.where(keep, lab, 0).astype(lab.dtype, copy=False), dropped


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def choose_rule(cases) -> dict:
    """The rule for a model, from (predicted mask, true mask) pairs of its validation cases.

    ``largest_component`` when it raises the mean Dice over the cases, else ``none``; the
    dict says both means and the number of cases (plain types: it goes into a checkpoint).
    """
    raw, kept = [], []
    for pred, truth in cases:
        p, t = np.asarray(pred, bool), np.asarray(truth, bool)
        raw.append(_dice(p, t))
        kept.append(_dice(largest_component(p)[0], t))
    if not raw:
        return {"rule": NONE, "cases": 0, "reason": "no validation cases"}
    # Compared as stored (4 decimals): the two numbers the checkpoint shows explain the
    # choice, and a gain under 0.0001 is no reason to drop a lesion.
    mean_raw, mean_kept = round(float(np.mean(raw)), 4), round(float(np.mean(kept)), 4)
    return {"rule": LARGEST if mean_kept > mean_raw else NONE, "cases": len(raw),
            "dice_raw": mean_raw, "dice_rule": mean_kept,
            "chosen_on": "validation cases, mean Dice"}


def describe(choice: dict | None) -> str:
    """One line for a log or the Train dock: what was chosen, on what."""
    if not choice:
        return ""
    if not choice.get("cases"):
        return f"post-processing: none ({choice.get('reason', 'not measured')})"
    verdict = "keep the largest component" if choice.get("rule") == LARGEST else "none"
    return (f"post-processing: {verdict} (validation Dice {choice['dice_raw']:.3f} as predicted, "
            f"{choice['dice_rule']:.3f} largest component only, {choice['cases']} case(s))")
