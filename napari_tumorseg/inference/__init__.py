"""Inference: whole-volume prediction of every registry model (Qt-free).

:mod:`~napari_tumorseg.inference.predict` is the generator the Predict widget and
``tumorseg predict`` drive; :mod:`~napari_tumorseg.inference.sliding_window` runs 3D
models window by window.
"""

from napari_tumorseg.inference.predict import (  # noqa: F401
    CaseClassification,
    PredictionEvent,
    Predictor,
    aggregate_case,
    classify_case,
    classify_slices,
    iter_classify_slices,
    load_predictor,
    predict_array,
    predict_volume,
    probabilities_to_labels,
)

__all__ = [
    "CaseClassification",
    "PredictionEvent",
    "Predictor",
    "aggregate_case",
    "classify_case",
    "classify_slices",
    "iter_classify_slices",
    "load_predictor",
    "predict_array",
    "predict_volume",
    "probabilities_to_labels",
]
