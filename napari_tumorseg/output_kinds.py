"""What a model's output means, one object per kind: ``output_kind(name)``.

Every place that turns labels into a training target, chooses a loss's activation, turns
logits into probabilities or probabilities into labels, or names and colours the result
asks the model's :class:`OutputKind` instead of comparing strings. The split into an
activation step and a discretisation step follows MONAI's post transforms
(``Activations`` then ``AsDiscrete``); the tests hold both equal to MONAI's. They are not
called here because ``AsDiscrete`` keeps voxels *at* the threshold (``>=``), while a
threshold slider at 1.0 must clear the map, and both return MetaTensors where the
callers want plain arrays.

Kinds:

* ``binary``: one sigmoid channel; target (1, ...) float {0, 1}; map (z, y, x).
* ``regions``: BraTS WT / TC / ET, one sigmoid each (nested, not exclusive); target
  (3, ...) float from :func:`napari_tumorseg.brats.labels_to_regions`; map (3, z, y, x);
  labels are the BraTS-style region map (1 oedema, 2 core, 3 enhancing).
* ``multiclass``: softmax over K classes; target long (...); map (z, y, x) tumour
  probability for K == 2 (SegFormer: background / tumour), else (K, z, y, x) whose labels
  are the arg-max class.
* ``classes``: an image classifier, softmax over K classes; target the class index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from napari_tumorseg import brats
from napari_tumorseg.errors import TumorSegError


class OutputKind:
    """Base: the questions every kind answers. ``sigmoid`` is the loss/activation mode."""

    name: str = ""
    sigmoid: bool = True
    dense: bool = True  # a value per pixel (False: one label per image)

    def __repr__(self) -> str:
        return f"OutputKind({self.name!r})"

    # -- training
    def target(self, labels: np.ndarray, prep: Any) -> np.ndarray:
        """The training target of an integer label map; ``prep`` is the run's preprocessing."""
        raise TumorSegError(f"no pixel target for output kind {self.name!r}")

    def target_settings(self, label_values, convention: str | None, num_classes: int) -> dict:
        """Preprocessing entries :meth:`target` needs, chosen once from the training data."""
        return {}

    def target_mask(self, target: np.ndarray) -> np.ndarray:
        """(C, ...) bool foreground of a target made by :meth:`target` (metrics)."""
        return np.asarray(target) > 0.5

    def predicted_mask(self, logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
        """(N, C, ...) bool foreground of a batch's logits."""
        # A sigmoid above 0.5 is a logit above 0: no activation needed.
        return logits > 0 if threshold == 0.5 else logits.sigmoid() > threshold

    def metric_masks(self, logits: torch.Tensor, target: torch.Tensor):
        """Boolean prediction and target (N, C, ...) from a batch's logits (training metrics)."""
        return self.predicted_mask(logits), target > 0.5

    # -- inference
    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, C, ...) logits -> (N, C', ...) probabilities, C' the map's channels."""
        return logits.sigmoid()

    def to_labels(self, prob, threshold: float = 0.5) -> np.ndarray:
        """uint8 labels from a probability map (no model call: a threshold slider is cheap)."""
        brats.check_threshold(threshold)
        return (np.asarray(prob) > threshold).astype(np.uint8)

    #: What :meth:`clean` removes, for a checkbox or a flag; "" where it removes nothing.
    cleanup: str = ""

    def clean(self, labels: np.ndarray) -> tuple[np.ndarray, int]:
        """Labels from :meth:`to_labels` without what cannot be a tumour, and how many
        components went. Only kinds with a rule (:attr:`cleanup`) change anything."""
        return labels, 0

    # -- names and colours
    def channel_names(self, class_names: Sequence[str], num_classes: int) -> list[str] | None:
        """Names of the probability map's leading channels; None for one (z, y, x) map."""
        return None

    def label_names(self, class_names: Sequence[str], num_classes: int) -> dict[int, str]:
        name = class_names[-1] if len(class_names) >= 2 else "tumour"
        return {1: str(name)}

    def label_colors(self) -> Mapping[int | None, tuple[float, ...]] | None:
        """A ``{value: RGBA}`` for napari's DirectLabelColormap, or None for napari's own."""
        return None

    def describe(self, class_names: Sequence[str], num_classes: int) -> str:
        return self.name


class _Binary(OutputKind):
    name = "binary"

    def target(self, labels, prep):
        return (np.asarray(labels) > 0).astype(np.float32)[None]

    def activate(self, logits):
        return logits.sigmoid()[:, :1]

    def describe(self, class_names, num_classes):
        return "tumour probability"


class _Regions(OutputKind):
    name = "regions"

    def target(self, labels, prep):
        convention = _prep_value(prep, "region_convention") or "brats"
        return brats.labels_to_regions(labels, convention).astype(np.float32)

    def target_settings(self, label_values, convention, num_classes):
        return {"region_convention": convention or brats.guess_convention(label_values)}

    def to_labels(self, prob, threshold=0.5):
        return brats.regions_to_labels(prob, threshold)

    def metric_masks(self, logits, target):
        # NaN marks a region a one-object mask does not label (datasets.lesion_only_regions):
        # neither a hit nor a false positive there.
        return self.predicted_mask(logits) & ~torch.isnan(target), target > 0.5

    cleanup = "oedema without a core"

    def clean(self, labels):
        return brats.drop_coreless_components(labels)

    def channel_names(self, class_names, num_classes):
        return list(class_names) if len(class_names) == 3 else list(brats.REGION_NAMES)

    def label_names(self, class_names, num_classes):
        return {k: v for k, v in brats.REGION_LABEL_NAMES.items() if k}

    def label_colors(self):
        return dict(brats.REGION_COLORS)

    def describe(self, class_names, num_classes):
        return "WT/TC/ET regions"


class _Multiclass(OutputKind):
    name = "multiclass"
    sigmoid = False

    def target(self, labels, prep):
        n = int(_prep_value(prep, "num_classes") or 2)
        labels = np.asarray(labels)
        # A binary tumour mask for a 2-class model (SegFormer: 0 background / 1 tumour).
        return ((labels > 0) if n == 2 else np.clip(labels, 0, n - 1)).astype(np.int64)

    def target_settings(self, label_values, convention, num_classes):
        return {"num_classes": int(num_classes)}

    def target_mask(self, target):
        return (np.asarray(target) > 0)[None]

    def predicted_mask(self, logits, threshold=0.5):
        # Foreground is any class but background, whatever the threshold.
        return (logits.argmax(1) > 0)[:, None]

    def metric_masks(self, logits, target):
        return self.predicted_mask(logits), (target > 0)[:, None]

    def activate(self, logits):
        p = logits.softmax(dim=1)
        # Two classes are background / tumour: the map is the tumour probability alone.
        return p[:, 1:2] if p.shape[1] == 2 else p

    def to_labels(self, prob, threshold=0.5):
        prob = np.asarray(prob)
        if prob.ndim == 4:  # (K, z, y, x): the most probable class, threshold unused
            return np.argmax(prob, axis=0).astype(np.uint8 if prob.shape[0] <= 256 else np.uint16)
        return super().to_labels(prob, threshold)

    def channel_names(self, class_names, num_classes):
        return list(class_names) if num_classes > 2 else None

    def label_names(self, class_names, num_classes):
        if num_classes > 2:
            return {i: str(n) for i, n in enumerate(class_names) if i}
        return super().label_names(class_names, num_classes)

    def describe(self, class_names, num_classes):
        return f"{num_classes}-class segmentation"


class _Classes(OutputKind):
    name = "classes"
    sigmoid = False
    dense = False

    def metric_masks(self, logits, target):
        return logits.argmax(1), target

    def activate(self, logits):
        return logits.softmax(dim=1)

    def to_labels(self, prob, threshold=0.5):
        raise TumorSegError("a classifier gives class probabilities, not a label map")

    def label_names(self, class_names, num_classes):
        return {i: str(n) for i, n in enumerate(class_names)}

    def describe(self, class_names, num_classes):
        return f"{len(class_names)}-class classifier"


_KINDS: dict[str, OutputKind] = {k.name: k for k in (_Binary(), _Regions(), _Multiclass(), _Classes())}
KIND_NAMES = tuple(_KINDS)


def output_kind(kind: str | OutputKind) -> OutputKind:
    """The :class:`OutputKind` named ``kind`` (an OutputKind is returned as is)."""
    if isinstance(kind, OutputKind):
        return kind
    try:
        return _KINDS[str(kind)]
    except KeyError:
        raise TumorSegError(f"unknown model output kind {kind!r}; known: {', '.join(KIND_NAMES)}") from None


def _prep_value(prep: Any, key: str):
    """A field of a Preprocessing object or of the dict a checkpoint stores."""
    if prep is None:
        return None
    if isinstance(prep, Mapping):
        return prep.get(key)
    return getattr(prep, key, None)
