"""Progress events yielded by :func:`napari_tumorseg.training.engine.train`.

Plain dataclasses so that the widget (through napari's thread_worker), the CLI and
tests all consume the same stream. Exactly one terminal event ends every run:
:class:`DoneEvent`, :class:`CancelledEvent` or :class:`ErrorEvent`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StartEvent:
    """Sent once the data and model are ready, before the first step."""

    model: str
    device: str
    n_train: int  # training items (images, slices or patches) per epoch
    n_val: int
    train_cases: list[str]
    val_cases: list[str]
    start_epoch: int
    epochs: int
    config: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    step_estimate_s: float | None = None  # CPU: a step's expected seconds, before the first


@dataclass
class StepEvent:
    step: int  # global optimiser step, counted from the start of training (not this session)
    epoch: int  # 0-based
    batch: int  # 0-based index within the epoch
    n_batches: int
    loss: float
    eta_s: float  # estimated seconds to the end of the run


@dataclass
class EpochEvent:
    epoch: int  # 0-based; history rows store epoch + 1
    train_loss: float
    val_loss: float | None
    metrics: dict[str, float]  # validation metrics (train_* keys: running training metrics)
    lr: float
    is_best: bool
    checkpoint: str  # path of last.pt
    best_checkpoint: str | None = None
    time_s: float = 0.0


@dataclass
class DoneEvent:
    epochs_run: int
    best_epoch: int | None
    best_score: float | None
    last_checkpoint: str
    best_checkpoint: str | None
    history_csv: str
    stopped_early: bool = False
    time_limit_reached: bool = False  # stopped after the epoch that passed max_minutes
    #: The cleanup chosen on the validation cases and stored in best.pt (inference.postprocess).
    postprocessing: dict | None = None


@dataclass
class CancelledEvent:
    epoch: int
    batch: int
    checkpoint: str | None  # last.pt holding the state at the cancel point (None: not saved)
    message: str = "training cancelled"


@dataclass
class ErrorEvent:
    message: str  # one line for the user
    checkpoint: str | None = None  # the last good checkpoint, kept untouched
    detail: str = ""  # traceback for unexpected errors (bugs), empty for user errors


Event = StartEvent | StepEvent | EpochEvent | DoneEvent | CancelledEvent | ErrorEvent
