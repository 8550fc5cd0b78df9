"""Qt-free training engine: data sources, preprocessing, augmentation, losses and the
``train()`` generator that the widget, the CLI and torchrun drive."""

from napari_tumorseg.training.engine import TrainConfig, run_to_end, train  # noqa: F401
from napari_tumorseg.training.events import (  # noqa: F401
    CancelledEvent,
    DoneEvent,
    EpochEvent,
    ErrorEvent,
    StartEvent,
    StepEvent,
)
