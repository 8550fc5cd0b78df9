"""A 2D model asked for BraTS regions (``output: regions`` / ``tumorseg train --regions``):
three sigmoid outputs WT / TC / ET trained from each case's own label convention, recorded in
the checkpoint so that prediction gives a region map without being told."""

from __future__ import annotations

import numpy as np

from napari_tumorseg.training.engine import DoneEvent, TrainConfig, run_to_end


def _train(tmp_path, shared_data, **extra):
    cfg = TrainConfig.from_dict(dict(
        model="unet", data=str(shared_data / "brats2013_deepmedic"), out_dir=str(tmp_path / "run"),
        epochs=1, batch_size=4, size=64, tiny=True, threads=1, hd95=False, max_train_items=1,
        max_val_items=1, **extra))
    events = run_to_end(cfg)
    done = [e for e in events if isinstance(e, DoneEvent)]
    assert done, events[-1]
    return done[0]


def test_unet_trained_for_regions_predicts_a_region_map(tmp_path, shared_data):
    import torch

    from napari_tumorseg.inference.predict import Predictor, predict_array, probabilities_to_labels
    from napari_tumorseg.io.nifti import read_nifti

    done = _train(tmp_path, shared_data, output="regions")
    ckpt = torch.load(done.last_checkpoint, weights_only=True)
    assert ckpt["out_channels"] == 3
    assert ckpt["preprocessing"]["target"] == "regions"
    assert list(ckpt["class_names"]) == ["WT", "TC", "ET"]
    # The run's metrics name the regions (validation reports each).
    assert any("WT" in k for row in ckpt["history"] for k in row), ckpt["history"][-1]

    pred = Predictor.from_checkpoint(done.last_checkpoint, device="cpu")
    assert pred.output_kind == "regions" and pred.channel_names == ["WT", "TC", "ET"]
    case = shared_data / "brats2013_deepmedic" / "validation" / "brats_2013_pat0003_1"
    flair = read_nifti(case / "Flair_subtrMeanDivStd.nii.gz")
    t1c = read_nifti(case / "T1c_subtrMeanDivStd.nii.gz")
    czyx = np.stack([flair.data, t1c.data])[:, 70:74]
    prob = predict_array(pred, czyx)
    assert prob.shape == (3, 4, *czyx.shape[2:])
    assert np.isfinite(prob).all() and 0.0 <= prob.min() and prob.max() <= 1.0
    labels = probabilities_to_labels(prob, 0.5, pred.kind)
    assert labels.shape == czyx.shape[1:] and set(np.unique(labels)) <= {0, 1, 2, 3}


def test_resumed_regions_run_keeps_its_output(tmp_path, shared_data):
    done = _train(tmp_path, shared_data, output="regions")
    cfg = TrainConfig.from_dict(dict(model="unet", data=str(shared_data / "brats2013_deepmedic"),
                                     out_dir=str(tmp_path / "run"), epochs=2, resume=done.last_checkpoint,
                                     threads=1, hd95=False, max_train_items=1, max_val_items=1))
    events = run_to_end(cfg)
    again = next(e for e in events if isinstance(e, DoneEvent))
    import torch

    assert torch.load(again.last_checkpoint, weights_only=True)["out_channels"] == 3


def test_a_classifier_cannot_be_asked_for_regions(tmp_path, shared_data):
    from napari_tumorseg.training.engine import ErrorEvent

    def error_of(**extra):
        events = run_to_end(TrainConfig.from_dict(dict(
            data=str(shared_data / "brats2013_deepmedic"), out_dir=str(tmp_path / "e"), epochs=1,
            overwrite=True, **extra)))
        assert isinstance(events[-1], ErrorEvent), events[-1]
        return events[-1].message

    assert "classifier" in error_of(model="convnextv2", output="regions")
    assert "'binary' or 'regions'" in error_of(model="unet", output="classes")
