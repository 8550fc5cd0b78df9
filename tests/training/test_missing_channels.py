"""A model that reads any subset of FLAIR / T1 / T1c / T2: ``channels`` names its sequences,
a case lacking one gets a zero channel there (``missing_channels: zeros`` in the checkpoint),
and channel dropout in training teaches it to segment from what a case has."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_tumorseg.channels import channel_indices, take_channels
from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.training.augment import AugmentConfig, augment
from napari_tumorseg.training.preprocessing import Preprocessing


def test_a_missing_sequence_is_a_zero_channel_only_when_asked():
    have = ["case_flair.nii.gz", "case_t1ce.nii.gz"]
    wanted = ["FLAIR", "T1", "T1c", "T2"]
    with pytest.raises(TumorSegError, match="no T1 scan"):
        channel_indices(have, wanted)
    idx = channel_indices(have, wanted, missing="zeros")
    assert idx == [0, None, 1, None]
    image = np.stack([np.full((2, 3, 3), 5.0), np.full((2, 3, 3), 7.0)]).astype(np.float32)
    out = take_channels(image, idx)
    assert out.shape == (4, 2, 3, 3) and out[0].max() == 5 and out[2].max() == 7
    assert not out[1].any() and not out[3].any()
    with pytest.raises(TumorSegError, match="none of"):
        channel_indices(["x_t1.nii.gz"], ["FLAIR", "T2"], missing="zeros")
    with pytest.raises(TumorSegError, match="missing_channels"):
        Preprocessing(dims=2, channels=1, missing_channels="guess")


def test_channel_dropout_blanks_some_never_all_and_absent_ones_stay_blank():
    image = torch.zeros(4, 16, 16)
    image[0, 4:12, 4:12] = 1.0
    image[2, 4:12, 4:12] = 2.0  # channels 1 and 3: sequences the case lacks
    target = torch.zeros(1, 16, 16)
    cfg = AugmentConfig(channel_drop_p=0.5, scale_p=1.0, shift_p=1.0, flips=False, rotate=False,
                        blur=False, contrast=False)
    kept_sets = set()
    for seed in range(40):
        x, _ = augment(image, target, torch.Generator().manual_seed(seed), cfg)
        live = tuple(int(c) for c in range(4) if x[c].abs().sum() > 0)
        assert live and set(live) <= {0, 2}, live  # never all blank; the absent stay blank
        kept_sets.add(live)
    assert kept_sets == {(0,), (2,), (0, 2)}  # both dropped one at a time, and neither
    with pytest.raises(TumorSegError, match="channel_drop_p"):
        AugmentConfig(channel_drop_p=1.5)


def test_channel_dropout_per_channel():
    """One probability per channel: a sequence seen in few training cases can be blanked more
    often than the ones every case holds (here: channel 0 never, channel 2 always)."""
    image = torch.ones(4, 16, 16)
    target = torch.zeros(1, 16, 16)
    cfg = AugmentConfig(channel_drop_p=[0.0, 0.5, 1.0, 0.5], scale_p=0.0, shift_p=0.0, gamma_p=0.0,
                        bias_p=0.0, flips=False, rotate=False, blur=False, contrast=False)
    live_sets = set()
    for seed in range(40):
        x, _ = augment(image, target, torch.Generator().manual_seed(seed), cfg)
        live = tuple(int(c) for c in range(4) if x[c].abs().sum() > 0)
        assert 0 in live and 2 not in live, live
        live_sets.add(live)
    assert {(0,), (0, 1), (0, 3), (0, 1, 3)} == live_sets
    with pytest.raises(TumorSegError, match="names 2 channels, the run has 4"):
        augment(image, target, torch.Generator().manual_seed(0), AugmentConfig(channel_drop_p=[0.1, 0.2]))
    with pytest.raises(TumorSegError, match="channel_drop_p"):
        AugmentConfig(channel_drop_p=[0.1, 2.0])


def test_training_with_named_channels_reads_cases_that_lack_some(tmp_path, shared_data):
    from napari_tumorseg.training.engine import DoneEvent, TrainConfig, run_to_end

    # brats2013_deepmedic holds FLAIR and T1c only: T1 and T2 are zeros for it.
    cfg = TrainConfig.from_dict(dict(
        model="unet", data=str(shared_data / "brats2013_deepmedic"), out_dir=str(tmp_path / "run"),
        epochs=1, batch_size=4, size=64, tiny=True, threads=1, hd95=False, max_train_items=1,
        max_val_items=1, channels=["FLAIR", "T1", "T1c", "T2"], augmentation={"channel_drop_p": 0.3}))
    events = run_to_end(cfg)
    done = [e for e in events if isinstance(e, DoneEvent)]
    assert done, events[-1]
    ckpt = torch.load(done[0].last_checkpoint, weights_only=True)
    assert ckpt["in_channels"] == 4
    assert ckpt["preprocessing"]["channel_names"] == ["FLAIR", "T1", "T1c", "T2"]
    assert ckpt["preprocessing"]["missing_channels"] == "zeros"
    with pytest.raises(TumorSegError, match="not an MR sequence"):
        TrainConfig.from_dict(dict(model="unet", data=str(shared_data / "brats2013_deepmedic"),
                                   out_dir=str(tmp_path / "bad"), epochs=1, channels=["FLAIR", "DWI"]))
