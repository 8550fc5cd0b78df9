"""The learned click engine's precision (issue 15): the shipped starter under bf16 gives the
fp32 masks on real BraTS and LGG slices; auto is fp32 where the CPU has no native bf16."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_tumorseg.interactive.engines import starter_checkpoint
from napari_tumorseg.interactive.learned import LearnedEngine
from napari_tumorseg.interactive.prompts import Prompts
from napari_tumorseg.interactive.simulate import deep_point
from napari_tumorseg.precision import resolve

# The click starter for single images (the volume one, starter_click_brats.pt, has its own tests).
STARTER = [p for p in [starter_checkpoint()] if p]


def _dice(a, b) -> float:
    total = np.count_nonzero(a) + np.count_nonzero(b)
    return 1.0 if total == 0 else 2 * np.count_nonzero(a & b) / total


def _brats_slice(shared_data):
    from napari_tumorseg.io.nifti import read_nifti

    case = shared_data / "brats2013_deepmedic" / "validation" / "brats_2013_pat0004_1"
    flair = read_nifti(case / "Flair_subtrMeanDivStd.nii.gz")
    gt = np.asarray(read_nifti(case / "OTMultiClass.nii.gz").data) > 0
    z = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(1)))
    return np.asarray(flair.data, np.float32)[None, z: z + 1], flair.spacing, gt[z]


def _lgg_slice(shared_data):
    from napari_tumorseg.training.datasets import open_source

    ref = next(r for r in open_source(shared_data / "lgg_kaggle3m").refs if "DU_A5TU" in r.case_id)
    data = ref.load()
    gt = data.labels > 0
    z = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(1)))
    return data.image[1:2, z: z + 1], (1.0, 1.0, 1.0), gt[z]


@pytest.mark.parametrize("load", [_brats_slice, _lgg_slice], ids=["brats2013", "lgg"])
def test_starter_bf16_masks_match_fp32(shared_data, load):
    assert STARTER
    image, spacing, gt = load(shared_data)
    p = deep_point(gt, (1.0, 1.0))
    prompts = Prompts(positive=[[0, p[0], p[1]]])
    masks = {}
    for name in ("fp32", "bf16"):
        engine = LearnedEngine.from_checkpoint(STARTER[0])
        engine.precision = resolve(name, "cpu")
        masks[name] = engine.segment(image, spacing, prompts)[0]
    assert _dice(masks["fp32"], gt) > 0.5
    assert _dice(masks["bf16"], masks["fp32"]) >= 0.99
    assert abs(_dice(masks["bf16"], gt) - _dice(masks["fp32"], gt)) < 0.01


@pytest.mark.parametrize("flag, dtype", [("0", torch.float32), ("1", torch.bfloat16)])
def test_auto_follows_the_processor(shared_data, monkeypatch, flag, dtype):
    monkeypatch.setenv("TUMORSEG_CPU_BF16", flag)
    engine = LearnedEngine.from_checkpoint(STARTER[0])
    assert engine.precision.dtype == (None if dtype is torch.float32 else dtype)
    seen = []
    image, spacing, gt = _lgg_slice(shared_data)
    p = deep_point(gt, (1.0, 1.0))
    engine.segment(image, spacing, Prompts(positive=[[0, p[0], p[1]]]))
    # bf16 runs a bf16 copy of the weights (made at the first call); the loaded model stays fp32
    ran = engine._bf16_model if dtype is torch.bfloat16 else engine.model
    assert ran is not None and all(q.dtype == dtype for q in ran.parameters())
    assert all(q.dtype == torch.float32 for q in engine.model.parameters())
    conv = next(m for m in ran.modules() if isinstance(m, torch.nn.Conv2d))
    hook = conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    try:
        mask = engine.segment(image, spacing, Prompts(positive=[[0, p[0], p[1] + 1]]))
    finally:
        hook.remove()
    assert seen and set(seen) == {dtype} and mask.dtype == bool


def test_the_volume_click_model_runs_channels_last():
    from napari_tumorseg.interactive.engines import load_learned, volume_starter_checkpoint

    engine = load_learned(volume_starter_checkpoint())
    conv = next(m for m in engine.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
