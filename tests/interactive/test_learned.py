"""The learned click engine: slice-to-slice propagation on a synthetic volume, the
engine's geometry with a hand-made network, and the shipped starter model on real slices."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.interactive.encoding import ClickEncoding, ClickGuided
from napari_tumorseg.interactive.engines import starter_checkpoint
from napari_tumorseg.interactive.learned import LearnedEngine
from napari_tumorseg.interactive.prompts import ClickEngine, Prompts
from napari_tumorseg.interactive.propagate import propagate
from napari_tumorseg.metrics import segmentation_metrics

# The click starter for single images (the volume one, starter_click_brats.pt, has its own tests).
STARTER = [p for p in [starter_checkpoint()] if p]


def _ellipsoid(shape, centre, radii):
    zz, yy, xx = np.indices(shape)
    return (((zz - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2
            + ((xx - centre[2]) / radii[2]) ** 2) <= 1.0


def test_propagation_follows_the_object_and_stops_where_it_ends():
    shape = (30, 48, 48)
    target = _ellipsoid(shape, (14, 20, 20), (6, 10, 9))
    other = _ellipsoid(shape, (14, 20, 40), (12, 5, 4))  # a second lesion, longer in z
    bright = target | other
    calls = []

    def segment_slices(reqs):  # a "network" that returns every bright pixel of the slice
        calls.append(len(reqs))
        for z, pos, neg, prev in reqs:
            assert prev is not None and prev.any() and len(pos) == 0  # the neighbour's mask, no click
        return [bright[z] for z, *_ in reqs]

    seed = 14
    out = propagate(shape[0], {seed: target[seed]}, segment_slices)
    # Up to the object's ends (its tips of under 4 pixels count as ended), not the other
    # lesion's, which goes on for 6 more slices each way.
    z_has = sorted(z for z in range(shape[0]) if target[z].sum() >= 4)
    assert z_has == list(range(z_has[0], z_has[-1] + 1)) and len(z_has) >= 9
    assert sorted(out) == z_has
    for z in z_has:
        assert np.array_equal(out[z], target[z]), z  # the other lesion never joins
    assert max(calls) == 2  # both fronts share one forward pass
    assert propagate(shape[0], {seed: target[seed]}, segment_slices, cancel=lambda: True) is None


class _ClickDisk(nn.Module):
    """Logits +5 on the positive click's disk, -5 elsewhere: shows where a click lands."""

    def forward(self, x):
        return (x[:, 1:2] > 0).float() * 10 - 5


class _Threshold(nn.Module):
    """Logits +5 where the image is bright, -5 elsewhere; a negative click's disk wins.
    Enough to check the engine's geometry and propagation without training."""

    def forward(self, x):
        img, neg = x[:, :1], x[:, 2:3]
        return ((img > 0.5) & ~(neg > 0)).float() * 10 - 5


def _engine(size=(64, 64), net=None):
    model = ClickGuided(net or _Threshold(), ClickEncoding(radius_mm=3.0, min_radius_px=0.0), 1)
    prep = {"dims": 2, "size": list(size), "spatial": "resize", "normalize": "none", "channels": 1}
    return LearnedEngine(model, {"model_name": "threshold", "preprocessing": prep})


def test_engine_maps_clicks_between_the_image_and_the_model_grid():
    engine = _engine(net=_ClickDisk())
    assert isinstance(engine, ClickEngine)
    image = np.zeros((1, 1, 120, 80), np.float32)  # anisotropic resize 120x80 -> 64x64
    spacing = (1.0, 0.5, 0.75)
    mask = engine.segment(image, spacing, Prompts(positive=[[0, 60, 40]]))
    assert mask.shape == (1, 120, 80) and mask.any()
    ys, xs = np.nonzero(mask[0])
    assert abs(ys.mean() - 60) <= 1 and abs(xs.mean() - 40) <= 1
    # A 3 mm disk: 6 rows of 0.5 mm, 4 columns of 0.75 mm, up to resampling.
    assert 10 <= ys.max() - ys.min() + 1 <= 14 and 7 <= xs.max() - xs.min() + 1 <= 10


def test_engine_propagates_a_3d_object_and_a_negative_click_removes_a_part():
    engine = _engine()
    shape = (20, 64, 64)
    obj = _ellipsoid(shape, (10, 30, 30), (5, 12, 12))
    image = obj[None].astype(np.float32)
    mask = engine.segment(image, (3.0, 1.0, 1.0), Prompts(positive=[[10, 30, 30]]))
    dice = segmentation_metrics(mask, obj, (3.0, 1.0, 1.0), hd=False)["dice"]
    assert dice > 0.97
    assert not mask[:5].any() and not mask[16:].any()
    neg = engine.segment(image, (3.0, 1.0, 1.0),
                         Prompts(positive=[[10, 30, 30]], negative=[[10, 30, 40]]))
    assert not neg[10, 30, 40] and neg[10, 30, 30]


def test_engine_rejects_a_non_interactive_checkpoint(tmp_path):
    from napari_tumorseg.models import create_model, get_info
    from napari_tumorseg.models.checkpoint import save_checkpoint

    model = create_model("unet", in_channels=1, **get_info("unet").tiny_config)
    path = save_checkpoint(tmp_path / "auto.pt", model, model_name="unet",
                           config=get_info("unet").tiny_config, in_channels=1, out_channels=1,
                           preprocessing={"dims": 2}, class_names=["bg", "tumour"], history=[])
    with pytest.raises(TumorSegError, match="not a click-guided checkpoint"):
        LearnedEngine.from_checkpoint(path)


# ----------------------------------------------------------------------------- the starter


def _starter():
    assert STARTER, "no starter_click_*.pt shipped in napari_tumorseg/resources"
    return LearnedEngine.from_checkpoint(STARTER[0])


def test_starter_is_small_and_loads_safely():
    assert STARTER and STARTER[0].stat().st_size < 8 * 2**20
    ckpt = torch.load(STARTER[0], weights_only=True)
    assert ckpt["config"]["interactive"]["channels"] == 3
    engine = _starter()
    assert engine.name.startswith("learned: ")


def _deep(mask):
    from napari_tumorseg.interactive.simulate import deep_point

    return deep_point(mask, (1.0, 1.0))


def test_starter_segments_a_real_brats_slice_from_one_click(shared_data):
    from napari_tumorseg.io.nifti import read_nifti

    case = shared_data / "brats2013_deepmedic" / "validation" / "brats_2013_pat0004_1"
    flair = read_nifti(case / "Flair_subtrMeanDivStd.nii.gz")
    labels = np.asarray(read_nifti(case / "OTMultiClass.nii.gz").data)
    gt = labels > 0
    z = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(1)))
    image = np.asarray(flair.data, np.float32)[None, z: z + 1]
    p = _deep(gt[z])
    mask = _starter().segment(image, flair.spacing, Prompts(positive=[[0, p[0], p[1]]]))
    dice = segmentation_metrics(mask[0], gt[z], flair.spacing[1:], hd=False)["dice"]
    assert mask.any() and dice > 0.5, dice


def test_starter_segments_a_real_lgg_slice_from_one_click(shared_data):
    from napari_tumorseg.training.datasets import open_source

    ref = next(r for r in open_source(shared_data / "lgg_kaggle3m").refs if "DU_A5TU" in r.case_id)
    data = ref.load()
    gt = data.labels > 0
    z = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(1)))
    p = _deep(gt[z])
    # The starter is a one-channel model; channel 1 of the LGG TIFFs is FLAIR (the dataset's
    # order: pre-contrast, FLAIR, post-contrast), the sequence its masks were drawn on.
    mask = _starter().segment(data.image[1:2, z: z + 1], (1.0, 1.0, 1.0),
                              Prompts(positive=[[0, p[0], p[1]]]))
    dice = segmentation_metrics(mask[0], gt[z], (1.0, 1.0), hd=False)["dice"]
    assert mask.any() and dice > 0.5, dice


def test_3d_engine_runs_on_a_crop_around_the_clicks():
    model = ClickGuided(_Threshold(), ClickEncoding(radius_mm=3.0, min_radius_px=0.0), 1)
    prep = {"dims": 3, "patch_size": [8, 16, 16], "normalize": "none", "channels": 1}
    engine = LearnedEngine(model, {"model_name": "glims", "preprocessing": prep})
    image = np.ones((1, 20, 40, 40), np.float32)  # bright everywhere: the crop shows itself
    mask = engine.segment(image, (1.0, 1.0, 1.0), Prompts(positive=[[10, 30, 5]]))
    expect = np.zeros((20, 40, 40), bool)
    expect[6:14, 22:38, 0:16] = True  # centred on the click, shifted to stay inside
    assert np.array_equal(mask, expect)
    prior = np.zeros((20, 40, 40), bool)
    prior[0, 0, 39] = True  # outside the crop: kept
    mask = engine.segment(image, (1.0, 1.0, 1.0), Prompts(positive=[[10, 30, 5]]), prior=prior)
    assert mask[0, 0, 39] and mask[10, 30, 5]


def test_propagation_after_a_new_click_is_incremental():
    shape = (30, 48, 48)
    target = _ellipsoid(shape, (14, 20, 20), (6, 10, 9))
    calls = []

    def segment_slices(reqs):
        calls.append([z for z, *_ in reqs])
        return [target[z] for z, *_ in reqs]

    # The previous answer already fits: the fronts stop after 3 agreeing slices each way.
    previous = {z: target[z] for z in range(shape[0])}
    out = propagate(shape[0], {14: target[14]}, segment_slices, previous=previous)
    assert calls == [[13, 15], [12, 16], [11, 17]] and sorted(out) == list(range(11, 18))
    # The previous answer ran 4 slices too far each way: those runs are cleared.
    long = _ellipsoid(shape, (14, 20, 20), (10, 10, 9))
    previous = {z: long[z] for z in range(shape[0])}
    out = propagate(shape[0], {14: target[14]}, segment_slices, previous=previous)
    z_obj = [z for z in range(shape[0]) if target[z].sum() >= 4]
    z_old = [z for z in range(shape[0]) if long[z].any()]
    for z in z_old:
        assert z in out and np.array_equal(out[z], target[z] if z in z_obj else np.zeros_like(target[z])), z


class _IgnoresClicks(nn.Module):
    def forward(self, x):
        return (x[:, :1] > 0.5).float() * 10 - 5


def test_every_click_gets_its_way_under_its_disk():
    engine = _engine(net=_IgnoresClicks())
    image = np.zeros((1, 1, 64, 64), np.float32)
    image[0, 0, 10:40, 10:40] = 1.0
    mask = engine.segment(image, (1.0, 1.0, 1.0),
                          Prompts(positive=[[0, 55, 55]], negative=[[0, 25, 25]]))
    assert mask[0, 55, 55] and mask[0, 55, 57] and not mask[0, 55, 59]  # a 3 mm disk added
    assert not mask[0, 25, 25] and not mask[0, 25, 27] and mask[0, 25, 29]  # and one removed
    assert mask[0, 12, 12]  # the rest of what the network said stays


def test_a_front_that_ends_between_two_clicked_parts_does_not_cut_the_object():
    """Where one front finds the object ended, the previous answer's run beyond is cleared
    only when it does not lead to a part another front still holds: between two clicked
    slices the object goes on (a threshold moved by a click once cut eleven slices out of a
    whole tumour this way)."""
    n = 30
    disk = _ellipsoid((1, 40, 40), (0, 20, 20), (1, 8, 8))[0]
    wider = _ellipsoid((1, 40, 40), (0, 20, 20), (1, 9, 9))[0]  # no front settles on it
    previous = {z: wider.copy() for z in range(5, 26)}  # the answer on screen: slices 5-25
    faint = set(range(12, 15))  # the network, asked again, finds nothing on these slices

    def segment_slices(reqs):  # past the faint band it agrees with the answer on screen
        return [np.zeros_like(disk) if z in faint else wider if z > 14 else disk for z, *_ in reqs]

    out = propagate(n, {8: disk, 20: wider}, segment_slices, previous=previous)
    assert 17 in out and 16 not in out  # the front from slice 20 settled after three slices
    kept = [z for z in range(n) if (out[z] if z in out else previous.get(z, np.zeros_like(disk))).any()]
    assert set(range(5, 26)) <= set(kept)
    # A run that ends without meeting another part is still cleared (the object got shorter).
    previous = {z: wider.copy() for z in range(5, 26)}
    out = propagate(n, {8: disk}, segment_slices, previous=previous)
    assert all(not out[z].any() for z in range(12, 26))


def test_an_enhancing_rim_propagates_past_the_cross_section_it_was_clicked_on():
    """Propagation stops where a cross-section outgrows 1.5 x the clicked one (a leak
    guard: the first click goes to a lesion's widest part); the enhancing rim is clicked
    where it is thickest, not widest, so for that target the bound is 4 x."""
    shape = (24, 64, 64)
    zz, yy, xx = np.indices(shape)
    radius = 3 + 0.45 * zz  # widens slice after slice: 3 px at z 0, 13 px at z 23
    cone = np.hypot(yy - 32, xx - 32) <= radius
    image = cone[None].astype(np.float32)
    reach = {}
    for target in ("whole", "enhancing"):
        engine = _engine()
        engine.set_target(target)
        mask = engine.segment(image, (1.0, 1.0, 1.0), Prompts(positive=[[4, 32, 32]]))
        reach[target] = int(np.nonzero(mask.any((1, 2)))[0].max())
    assert reach["whole"] < 12 < reach["enhancing"]
