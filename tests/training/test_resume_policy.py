"""An output folder holding a run is never replaced silently (the Train dock's rule, headless)."""

import pytest
import torch

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.models import create_model
from napari_tumorseg.models.checkpoint import save_checkpoint
from napari_tumorseg.training.preprocessing import default_preprocessing
from napari_tumorseg.training.resume import earlier_run, plan_start


def _run(folder, epochs_done, planned, batch=0):
    torch.manual_seed(0)
    model = create_model("unet", in_channels=1, out_channels=1, width=4)
    prep = default_preprocessing(2, [48, 48], 1, "binary")
    save_checkpoint(folder / "last.pt", model, model_name="unet", config={"width": 4}, in_channels=1,
                    out_channels=1, preprocessing=prep, class_names=["background", "tumour"],
                    history=[{"epoch": e, "train_loss": 1.0} for e in range(epochs_done)],
                    extra={"train_state": {"epoch": epochs_done, "batch": batch, "epochs": planned}})
    return folder


def test_nothing_to_ask_without_a_run_or_when_the_user_said(tmp_path):
    assert earlier_run(tmp_path) is None
    _run(tmp_path, 2, 2)
    assert earlier_run(tmp_path, overwrite=True) is None
    assert earlier_run(tmp_path, resume=tmp_path / "other.pt") is None
    run = earlier_run(tmp_path)
    assert run.epochs_done == 2 and run.epochs_planned == 2 and not run.partial
    assert run.summary() == " of 2 epoch(s)"


def test_resume_needs_epochs_left_and_anew_is_explicit(tmp_path):
    run = earlier_run(_run(tmp_path, 2, 2))
    with pytest.raises(TumorSegError, match="already has 2 epoch"):
        plan_start(run, "resume", 2)
    assert plan_start(run, "resume", 4).resume == run.last
    assert plan_start(run, "resume", 2, time_limited=True).resume == run.last
    anew = plan_start(run, "anew", 2)
    assert anew.resume is None and anew.overwrite


def test_a_cancelled_run_resumes_at_the_same_epoch_count(tmp_path):
    run = earlier_run(_run(tmp_path, 1, 2, batch=3))
    assert run.partial and "cancelled" in run.summary()
    assert plan_start(run, "resume", 1).resume == run.last


def test_an_unreadable_last_pt_is_still_a_run_to_ask_about(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"damaged")
    run = earlier_run(tmp_path)
    assert run is not None and run.epochs_done == 0
