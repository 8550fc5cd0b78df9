"""Output kinds: targets, activations and labels, held against MONAI's post transforms."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_tumorseg.brats import labels_to_regions
from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.output_kinds import KIND_NAMES, output_kind


@pytest.fixture(scope="module")
def truth(shared_data) -> np.ndarray:
    path = shared_data / "brats2013_deepmedic/train/brats_2013_pat0005_1/OTMultiClass.nii.gz"
    return np.round(np.asarray(nib.load(path).dataobj)).astype(np.int64)[60:64]


def test_lookup():
    assert KIND_NAMES == ("binary", "regions", "multiclass", "classes")
    assert output_kind("regions") is output_kind(output_kind("regions"))
    with pytest.raises(TumorSegError, match="unknown model output kind 'softmax'"):
        output_kind("softmax")


def test_targets_from_real_labels(truth):
    np.testing.assert_array_equal(output_kind("binary").target(truth, {}), (truth > 0)[None])
    regions = output_kind("regions").target(truth, {"region_convention": "brats"})
    np.testing.assert_array_equal(regions, labels_to_regions(truth, "brats"))
    assert regions.dtype == np.float32
    two = output_kind("multiclass").target(truth, {"num_classes": 2})
    np.testing.assert_array_equal(two, truth > 0)
    five = output_kind("multiclass").target(truth, {"num_classes": 5})
    np.testing.assert_array_equal(five, truth)
    with pytest.raises(TumorSegError, match="no pixel target"):
        output_kind("classes").target(truth, {})


def test_activation_equals_monai_activations():
    from monai.transforms import Activations

    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 6)
    np.testing.assert_allclose(output_kind("regions").activate(logits),
                               Activations(sigmoid=True)(logits).as_tensor(), rtol=1e-6)
    soft = Activations(softmax=True, dim=1)(logits).as_tensor()
    np.testing.assert_allclose(output_kind("multiclass").activate(logits), soft, rtol=1e-6)
    # Two classes: only the tumour channel is kept.
    two = torch.randn(2, 2, 5, 6)
    np.testing.assert_allclose(output_kind("multiclass").activate(two),
                               Activations(softmax=True, dim=1)(two).as_tensor()[:, 1:], rtol=1e-6)
    np.testing.assert_allclose(output_kind("binary").activate(logits[:, :1]),
                               logits[:, :1].sigmoid(), rtol=1e-6)


def test_labels_equal_monai_as_discrete_off_the_threshold(truth):
    from monai.transforms import AsDiscrete

    rng = np.random.default_rng(0)
    prob = rng.random((3, 4, 8, 8)).astype(np.float32)
    prob[np.isclose(prob, 0.4)] = 0.41  # AsDiscrete keeps voxels at the threshold, we do not
    as_disc = AsDiscrete(threshold=0.4)(prob[0]).as_tensor().numpy()
    np.testing.assert_array_equal(output_kind("binary").to_labels(prob[0], 0.4), as_disc)
    argmax = AsDiscrete(argmax=True, keepdim=False)(prob).as_tensor().numpy()
    np.testing.assert_array_equal(output_kind("multiclass").to_labels(prob, 0.4), argmax)
    # At the threshold: a slider at 1.0 clears the map, at 0 it leaves empty voxels empty.
    assert not output_kind("binary").to_labels(np.ones((2, 2)), 1.0).any()
    assert not output_kind("binary").to_labels(np.zeros((2, 2)), 0.0).any()
    with pytest.raises(TumorSegError, match="threshold"):
        output_kind("binary").to_labels(prob[0], 1.5)


def test_metric_masks_match_thresholded_probabilities():
    torch.manual_seed(1)
    logits = torch.randn(2, 1, 6, 6)
    target = (torch.rand(2, 1, 6, 6) > 0.5).float()
    pred, tgt = output_kind("binary").metric_masks(logits, target)
    np.testing.assert_array_equal(pred.numpy(), output_kind("binary").to_labels(logits.sigmoid().numpy()) > 0)
    np.testing.assert_array_equal(tgt.numpy(), target.numpy() > 0)
    mc = torch.randn(2, 2, 6, 6)
    pred, _ = output_kind("multiclass").metric_masks(mc, target[:, 0].long())
    assert pred.shape == (2, 1, 6, 6)
    np.testing.assert_array_equal(pred[:, 0].numpy(), mc.softmax(1)[:, 1].numpy() > 0.5)


def test_names_and_colours():
    assert output_kind("regions").channel_names(["WT", "TC", "ET"], 3) == ["WT", "TC", "ET"]
    assert output_kind("binary").channel_names(["background", "tumour"], 1) is None
    assert output_kind("multiclass").channel_names(["bg", "tumour"], 2) is None
    assert output_kind("regions").label_names([], 3) == {1: "edema (WT - TC)", 2: "necrotic / non-enhancing core (TC - ET)",
                                                          3: "enhancing tumour (ET)"}
    assert output_kind("regions").label_colors()[3] == (1.0, 0.9, 0.0, 1.0)
    assert output_kind("binary").label_colors() is None
    assert output_kind("regions").target_settings([0, 1, 2], None, 3) == {"region_convention": "brats2012"}
    assert output_kind("multiclass").target_settings([0, 1], None, 2) == {"num_classes": 2}
