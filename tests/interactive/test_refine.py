"""Clicks on an existing prediction: add the missed region, remove a false positive, keep the rest."""

from __future__ import annotations

import numpy as np
import pytest

from napari_tumorseg.interactive.classic import ClassicEngine
from napari_tumorseg.interactive.prompts import Prompts
from napari_tumorseg.interactive.refine import refine_with_prompts
from napari_tumorseg.interactive.robot import dice


def _phantom():
    """Two bright blobs (the tumour and a second lesion) and a bright false-positive blob."""
    rng = np.random.default_rng(1)
    z, y, x = np.mgrid[:24, :64, :64]
    tumour = (z - 12) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 <= 8 ** 2
    second = (z - 12) ** 2 + (y - 44) ** 2 + (x - 44) ** 2 <= 6 ** 2
    image = 100 + 80 * (tumour | second) + rng.normal(0, 6, tumour.shape)
    return image[None].astype(np.float32), (1.0, 1.0, 1.0), tumour, second


def test_positive_click_adds_the_missed_region_and_keeps_the_rest():
    image, spacing, tumour, second = _phantom()
    prior = tumour.copy()  # the model found the tumour, missed the second lesion
    prior[0, 0, 0] = True  # a stray voxel nobody clicks on: it stays
    out = refine_with_prompts(prior, image, spacing, Prompts(positive=[(12, 44, 44)]), ClassicEngine())
    assert out[prior].all()
    assert dice(out & ~prior, second) > 0.9
    assert not np.array_equal(out, prior)


def test_negative_click_removes_a_false_positive_component():
    image, spacing, tumour, second = _phantom()
    prior = tumour | second  # "second" is the false positive here
    out = refine_with_prompts(prior, image, spacing, Prompts(negative=[(12, 44, 44)]), ClassicEngine())
    assert not (out & second).any()
    assert np.array_equal(out, tumour)


def test_negative_click_on_a_component_with_a_positive_removes_only_the_part_around_it():
    image, spacing, tumour, _ = _phantom()
    prior = tumour.copy()
    leak = np.zeros_like(prior)
    leak[8:16, 16:24, 28:50] = True  # a slab stuck to the tumour: one component with it
    prior |= leak
    out = refine_with_prompts(prior, image, spacing,
                              Prompts(positive=[(12, 20, 20)], negative=[(12, 20, 45)]), ClassicEngine())
    assert out[tumour].mean() > 0.95  # the tumour (holding the positive) stays
    assert not out[12, 20, 45]
    assert out.sum() < prior.sum()


def test_negative_click_off_the_mask_changes_nothing_and_prior_is_untouched():
    image, spacing, tumour, _ = _phantom()
    prior = tumour.copy()
    keep = prior.copy()
    out = refine_with_prompts(prior, image, spacing, Prompts(negative=[(2, 60, 2)]), ClassicEngine())
    assert np.array_equal(out, prior) and np.array_equal(prior, keep)


def test_classic_engine_with_a_prior_refines_it():
    image, spacing, tumour, second = _phantom()
    out = ClassicEngine().segment(image, spacing, Prompts(positive=[(12, 44, 44)]), prior=tumour)
    assert out[tumour].all() and dice(out, tumour | second) > 0.9


def test_not_tumour_scribbles_are_cleared():
    image, spacing, tumour, _ = _phantom()
    scr = np.zeros(tumour.shape, np.uint8)
    scr[12, 20, 12:29] = 2
    out = refine_with_prompts(tumour, image, spacing, Prompts(scribbles=scr), ClassicEngine())
    assert not out[12, 20, 12:29].any() and out.sum() == tumour.sum() - tumour[12, 20, 12:29].sum()


@pytest.mark.parametrize("bad_shape", [(24, 64, 63)])
def test_prior_on_another_grid_is_an_error(bad_shape):
    image, spacing, _, _ = _phantom()
    with pytest.raises(ValueError):
        refine_with_prompts(np.zeros(bad_shape, bool), image, spacing, Prompts(), ClassicEngine())


def test_two_dimensional_prior_and_a_positive_click_survives_removals():
    image, spacing, tumour, second = _phantom()
    img2d, t2d, s2d = image[:, 12:13], tumour[12:13], second[12:13]
    prior = t2d | s2d
    out = refine_with_prompts(prior, img2d, spacing, Prompts(negative=[(0, 44, 44)]), ClassicEngine())
    assert np.array_equal(out, t2d)
    # A negative click right beside a positive one never takes the positive click's pixel.
    out = refine_with_prompts(t2d, img2d, spacing,
                              Prompts(positive=[(0, 20, 20)], negative=[(0, 20, 21)]), ClassicEngine())
    assert out[0, 20, 20] and not out[0, 20, 21]
