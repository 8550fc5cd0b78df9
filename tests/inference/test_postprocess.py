"""The largest-component rule and its choice on validation cases, on real BraTS masks."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_tumorseg.inference import postprocess as pp


@pytest.fixture(scope="module")
def whole_tumour(shared_data) -> np.ndarray:
    case = shared_data / "brats_multi_year" / "BraTS2021_00006"
    return np.asarray(nib.load(case / "BraTS2021_00006_seg.nii.gz").dataobj) > 0


def _island(mask, offset=40, size=4):
    """A cube of false positive away from the tumour (in the empty part of the volume)."""
    free = np.argwhere(ndi.binary_dilation(mask, iterations=offset) == 0)
    z, y, x = free[len(free) // 2]
    out = mask.copy()
    out[z:z + size, y:y + size, x:x + size] = True
    return out, (z, y, x)


def test_largest_component_keeps_the_tumour_and_drops_an_island(whole_tumour):
    noisy, (z, y, x) = _island(whole_tumour)
    kept, dropped = pp.largest_component(noisy)
    assert dropped >= 1 and not kept[z, y, x]
    main = pp.largest_component(whole_tumour)[0]
    assert np.array_equal(kept, main)
    labels = noisy.astype(np.uint8)
    out, n = pp.apply_rule(labels, pp.LARGEST)
    assert n == dropped and out.dtype == np.uint8 and not out[z, y, x]
    assert np.array_equal(pp.apply_rule(labels, pp.NONE)[0], labels)
    with pytest.raises(ValueError, match="unknown post-processing rule"):
        pp.apply_rule(labels, "erode")
    # One image (1, y, x): 8-connected in the plane, never across.
    plane = noisy[z:z + 1]
    assert pp.largest_component(plane)[0].shape == plane.shape
    empty, n = pp.largest_component(np.zeros((3, 4, 4), bool))
    assert n == 0 and not empty.any()


def test_the_rule_is_chosen_only_when_it_raises_validation_dice(whole_tumour):
    truth = whole_tumour
    noisy, _ = _island(truth, size=12)
    choice = pp.choose_rule([(noisy, truth), (truth, truth)])
    assert choice["rule"] == pp.LARGEST and choice["cases"] == 2
    assert choice["dice_rule"] > choice["dice_raw"]
    # A second true lesion: keeping the largest only would lose it — not chosen.
    second, _ = _island(truth, size=12)
    choice = pp.choose_rule([(second, second)])
    assert choice["rule"] == pp.NONE and choice["dice_rule"] < choice["dice_raw"] == 1.0
    assert pp.choose_rule([])["rule"] == pp.NONE
    assert "largest component" in pp.describe({"rule": pp.LARGEST, "cases": 2, "dice_raw": 0.8,
                                               "dice_rule": 0.9})
