"""What to do when a training run is started in a folder that already holds one.

The rule, shared by the Train dock (which asks the user) and any driver: an output folder
with a ``last.pt`` is an earlier run; it is never replaced silently. The user resumes it
(from that ``last.pt``), starts anew (replacing it, explicitly), or cancels. Resuming a run
that already trained as many epochs as asked, and did not stop on its time limit, would
train nothing: refused with the reason. What the folder holds is read from the checkpoint
itself, not from what a dock remembers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from napari_tumorseg.errors import TumorSegError

LAST = "last.pt"


@dataclass(frozen=True)
class EarlierRun:
    folder: Path
    last: Path
    epochs_done: int  # completed epochs recorded in last.pt (0 when unreadable)
    epochs_planned: int | None  # the run's own epoch count, when recorded
    partial: bool  # last.pt was written mid-epoch (a cancel)

    def summary(self) -> str:
        if self.epochs_done <= 0 and not self.partial:
            return ""
        more = " (cancelled mid-epoch)" if self.partial else ""
        return f" of {self.epochs_done} epoch(s){more}"


def earlier_run(out_dir: str | Path | None, resume: str | Path | None = None,
                overwrite: bool = False) -> EarlierRun | None:
    """The run in ``out_dir`` the user must decide about, or None when there is nothing to
    ask: no folder, no last.pt, Overwrite ticked, or another checkpoint named to resume."""
    if out_dir is None or overwrite:
        return None
    last = Path(out_dir) / LAST
    if not last.is_file():
        return None
    if resume is not None and str(resume) and Path(resume).resolve() != last.resolve():
        return None
    done, planned, partial = 0, None, False
    try:
        from napari_tumorseg.models.checkpoint import load_checkpoint

        _, ck = load_checkpoint(last, build=False)
        state = (ck.get("extra") or {}).get("train_state") or {}
        done = len(ck.get("history") or [])
        planned = int(state["epochs"]) if "epochs" in state else None
        partial = int(state.get("batch", 0) or 0) > 0
    except (TumorSegError, KeyError, TypeError, ValueError):
        pass  # an unreadable last.pt is still a run the user must not lose silently
    return EarlierRun(Path(out_dir), last, done, planned, partial)


@dataclass(frozen=True)
class StartPlan:
    resume: Path | None  # the checkpoint to resume from
    overwrite: bool  # replace the earlier run's files (the user chose "start anew")


def plan_start(run: EarlierRun, choice: str, epochs_wanted: int, time_limited: bool = False) -> StartPlan:
    """Turn the user's answer ("resume" or "anew") into what the engine gets.

    ``time_limited``: the earlier run stopped on its time limit, so resuming it with the same
    epoch count still has epochs to train."""
    if choice == "anew":
        return StartPlan(None, True)
    if choice != "resume":
        raise TumorSegError(f"unknown choice {choice!r}: resume or anew")
    if not run.partial and not time_limited and run.epochs_done and epochs_wanted <= run.epochs_done:
        raise TumorSegError(f"that run already has {run.epochs_done} epoch(s): raise Epochs to continue it")
    return StartPlan(run.last, False)
