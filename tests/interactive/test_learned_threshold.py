"""A click near the answer's edge moves the object's threshold (the learned engine, 2D
models): the whole boundary follows, on slices far from the click too; a click far from the
edge, or in a thin structure, is a local fix only. Checked with a network whose probability
is known in closed form (a soft ellipsoid), through the dock's and the robot's call."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from napari_tumorseg.interactive.encoding import ClickEncoding, ClickGuided
from napari_tumorseg.interactive.engines import segment_with_prompts
from napari_tumorseg.interactive.learned import LearnedEngine
from napari_tumorseg.interactive.prompts import Prompts

SHAPE = (21, 64, 64)
SPACING = (2.0, 1.0, 1.0)
CENTRE = (10, 32, 32)


class _Soft(nn.Module):
    """Logits whose sigmoid is the image: the image is the network's probability."""

    def forward(self, x):
        p = x[:, :1].clamp(1e-4, 1 - 1e-4)
        return torch.log(p / (1 - p))


def _soft_ellipsoid(radius=14.0, width=2.0, ring=None):
    """p = sigmoid((R(z) - r) / width): the 0.5 line is a disk of radius R(z) on each slice
    (a ring of that outer radius, ``ring`` pixels thick, when ``ring`` is given)."""
    zz, yy, xx = np.indices(SHAPE, dtype=np.float32)
    r = np.hypot(yy - CENTRE[1], xx - CENTRE[2])
    rz = radius * np.sqrt(np.clip(1 - ((zz - CENTRE[0]) * SPACING[0] / 20.0) ** 2, 0, 1))
    p = 1 / (1 + np.exp(-(rz - r) / width))
    if ring is not None:
        p = np.minimum(p, 1 / (1 + np.exp(-(r - (rz - ring)) / width)))
    return p[None].astype(np.float32)


def _engine(adapt=True):
    model = ClickGuided(_Soft(), ClickEncoding(radius_mm=3.0, min_radius_px=0.0), 1)
    prep = {"dims": 2, "size": [64, 64], "spatial": "resize", "normalize": "none", "channels": 1}
    engine = LearnedEngine(model, {"model_name": "soft", "preprocessing": prep})
    engine.adapt_threshold = adapt
    return engine


def _clicks(engine, image, *more, first=CENTRE):
    """The first click (at the centre), then ``more`` (point, positive) as the dock sends them."""
    prompts = Prompts(positive=[first])
    shown = segment_with_prompts(engine, image, SPACING, prompts)
    answers = [shown]
    for point, positive in more:
        before = (prompts, shown)
        prompts = prompts.with_click(point, positive)
        shown = segment_with_prompts(engine, image, SPACING, prompts, previous=before)
        answers.append(shown)
    return answers


def test_a_negative_click_inside_near_the_edge_pulls_in_the_whole_boundary():
    image = _soft_ellipsoid()
    edge_click = (CENTRE[0], CENTRE[1], CENTRE[2] + 12)  # 2 px inside the 14 px edge: p = 0.73
    first, after = _clicks(_engine(), image, (edge_click, False))
    far = CENTRE[0] - 4  # 8 mm from the clicked slice, opposite side of the object
    assert first[far].sum() > after[far].sum() > 0.7 * first[far].sum()
    assert not after[edge_click]
    assert (after <= first).all()  # a negative click never adds
    # Without the rule the far slice keeps its edge: only the clicked slice changes.
    plain_first, plain_after = _clicks(_engine(adapt=False), image, (edge_click, False))
    assert np.array_equal(plain_first[far], plain_after[far])


def test_a_positive_click_just_outside_the_edge_pushes_it_out():
    image = _soft_ellipsoid()
    outside = (CENTRE[0], CENTRE[1] - 16, CENTRE[2])  # 2 px beyond the edge: p = 0.27
    first, after = _clicks(_engine(), image, (outside, True))
    far = CENTRE[0] + 4
    assert after[far].sum() > first[far].sum()
    assert after[outside] and (after >= first).all()


def test_clicks_far_from_the_edge_or_in_a_thin_rim_are_local_fixes():
    image = _soft_ellipsoid()
    deep = (CENTRE[0], CENTRE[1] + 4, CENTRE[2])  # 10 px from the edge: a false blob, not the line
    first, after = _clicks(_engine(), image, (deep, False))
    far = CENTRE[0] - 4
    assert np.array_equal(first[far], after[far]) and not after[deep]
    # An enhancing-like rim 4 px thick: every voxel is near an edge, which says nothing.
    rim = _soft_ellipsoid(ring=4.0)
    in_rim = (CENTRE[0], CENTRE[1], CENTRE[2] - 12)
    rim_click = (CENTRE[0], CENTRE[1], CENTRE[2] + 12)
    first, after = _clicks(_engine(), rim, (rim_click, False), first=in_rim)
    assert first[rim_click] and not after[rim_click]
    assert np.array_equal(first[far], after[far])


def test_the_dock_job_reports_a_moved_threshold_and_only_then():
    """Segment by clicks tells the user when clicks near the edge moved the boundary
    everywhere: its worker job returns the moved threshold, None when it did not move; a
    new array holding the same image still continues the previous answer."""
    pytest.importorskip("qtpy")
    from napari_tumorseg.widgets.segment_clicks import _segment_job

    image = _soft_ellipsoid()
    engine = _engine()
    first = Prompts(positive=[CENTRE])
    mask, _, moved, _ = _segment_job(engine, image, SPACING, first, None, None)
    assert moved is None
    edge = first.with_click((CENTRE[0], CENTRE[1], CENTRE[2] + 12), False)
    # The dock stacks the case's sequences into a new array on every click: the engine must
    # know it for the same image (an id-keyed cache made every click in the window a fresh
    # answer, with no threshold move and 2 s a click).
    _, _, moved, _ = _segment_job(engine, image.copy(), SPACING, edge, None, None, previous=(first, mask))
    assert moved is not None and 0.5 < moved <= 0.85
