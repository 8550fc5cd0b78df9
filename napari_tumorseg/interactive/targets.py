"""What the clicks segment: the lesion, or one of the regions a radiologist measures.

* ``lesion``: every label > 0 as one mask (a binary ground truth, a lesion of any kind);
* ``whole``: the whole tumour (WT), ``core``: the tumour core (TC), ``enhancing``: the
  enhancing tumour (ET) - BraTS regions, from a label map in its edition's own convention
  (:mod:`napari_tumorseg.brats`).

The classic engine reads the channels the target shows best (:func:`target_channels`),
chosen by the click robot on brats_multi_year and brats2013_deepmedic
(benchmarks/RESULTS_clicks.md); learned engines read what their checkpoint was trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_tumorseg.errors import TumorSegError

#: Target name -> what the dock shows.
TARGETS: dict[str, str] = {
    "lesion": "lesion",
    "whole": "whole tumour",
    "core": "tumour core",
    "enhancing": "enhancing",
}
REGION_OF = {"whole": "WT", "core": "TC", "enhancing": "ET"}

#: The sequences the classic engine reads per target, in order of preference: the first
#: set the case holds wholly is used; none (or a case with unnamed channels): every channel.
#: Measured with the robot (classic engine, 5 clicks, mean Dice@5 over the 4 brats_multi_year
#: and 4 brats2013_deepmedic cases; benchmarks/RESULTS_clicks.md): the whole tumour on FLAIR +
#: T2 gave 0.85 on the four cases with a T2, where all four sequences gave 0.76 and FLAIR alone
#: 0.70 (one case failed at 0.17); on the FLAIR + T1c cases both channels (0.76) beat FLAIR
#: alone (0.72). Core and enhancing tumour did best on every channel (0.70 / 0.72 over the
#: eight cases), T1c alone worst (0.51 / 0.65), T1c + FLAIR between (0.68 / 0.715).
CHANNELS_FOR: dict[str, tuple[tuple[str, ...], ...]] = {
    "lesion": (),
    "whole": (("FLAIR", "T2"),),
    "core": (),
    "enhancing": (),
}


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise TumorSegError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    return target


def target_from_label(text: str) -> str:
    """The target name of a dock label ("whole tumour" -> "whole")."""
    for name, label in TARGETS.items():
        if text in (name, label):
            return name
    raise TumorSegError(f"unknown target {text!r}")


def target_truth(labels, target: str, convention: str | None = None, names=(), label_names=None) -> np.ndarray:
    """The ground truth of ``target`` from a label map (bool, the map's shape).

    ``convention`` is the BraTS label convention; None: what the map's ``label_names`` say,
    else its ``names`` (the case folder, the label file), else its values
    (:func:`napari_tumorseg.brats.convention_of_map`).
    """
    from napari_tumorseg.brats import convention_of_map

    check_target(target)
    labels = np.asarray(labels)
    if target == "lesion":
        return labels > 0
    if convention is None:
        def extremes():
            return (int(labels.min()), int(labels.max())) if labels.size else (0, 0)

        convention = convention_of_map(extremes, label_names, [Path(str(n)).name for n in names])
    return region_mask(labels, REGION_OF[target], convention)


def region_mask(labels, region: str, convention: str = "regionmap") -> np.ndarray:
    """Region ``region`` (WT / TC / ET) of a label map of ``convention`` (default: the map this
    plugin predicts, 1 oedema, 2 core, 3 enhancing): what clicks that correct it start from."""
    from napari_tumorseg.brats import CONVENTIONS, REGION_NAMES

    if convention not in CONVENTIONS:
        raise TumorSegError(f"unknown region convention {convention!r}; known: {', '.join(CONVENTIONS)}")
    if region not in REGION_NAMES:
        raise TumorSegError(f"unknown region {region!r}; known: {', '.join(REGION_NAMES)}")
    return np.isin(np.asarray(labels), CONVENTIONS[convention][region])


def target_channels(channel_names, target: str) -> list[int] | None:
    """Indices of the channels the classic engine reads for ``target``; None: all of them."""
    from napari_tumorseg.channels import sequence_of

    check_target(target)
    if not channel_names:
        return None
    seqs = [sequence_of(str(n)) for n in channel_names]
    for wanted in CHANNELS_FOR[target]:
        if all(w in seqs for w in wanted):
            return [seqs.index(w) for w in wanted]
    return None


_CACHE: dict = {}


def select_channels(engine, image: np.ndarray, target: str, channel_names) -> np.ndarray:
    """``image`` (c, z, y, x) as ``engine`` reads it for ``target``.

    The selection of one image is cached (one entry), so an engine that recognises the image
    it saw last (the classic engine's click folding) sees the same buffer on every click.
    """
    chooser = getattr(engine, "channels_for", None)
    if chooser is None or image.ndim != 4 or channel_names is None:
        return image
    idx = chooser(target, list(channel_names))
    if idx is None or list(idx) == list(range(image.shape[0])):
        return image
    flat = image.reshape(-1)
    probe = float(np.asarray(flat[:: max(1, flat.size // 4096)], np.float64).sum())
    key = (image.__array_interface__["data"][0], image.shape, image.strides, tuple(idx), probe)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    from napari_tumorseg.channels import take_channels

    out = np.ascontiguousarray(take_channels(image, idx))  # None: a sequence the case lacks (zeros)
    # Two entries: a learned engine and the classic engine that grows the clicks it does not
    # follow (engines.ClickGrower) read different channels of the same case.
    while len(_CACHE) >= 2:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = out
    return out
