"""The click robot: a hand-computed 7x7 case, the NoC cap, early stop, priors, a 3D phantom."""

from __future__ import annotations

import numpy as np
import pytest

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.interactive.prompts import Prompts
from napari_tumorseg.interactive.robot import (
    RobotProgress,
    RobotResult,
    deepest_point,
    iter_clicks,
    next_click,
    simulate_clicks,
)


class SquareEngine:
    """A 3x3 square around every positive click, minus the pixel of every negative click."""

    name = "squares"

    def __init__(self):
        self.calls = []

    def segment(self, image, spacing, prompts: Prompts, prior=None, cancel=None):
        self.calls.append(prompts)
        shape = image.shape[1:]
        mask = np.zeros(shape, bool)
        for z, y, x in prompts.positive.astype(int):
            mask[z, max(0, y - 1):y + 2, max(0, x - 1):x + 2] = True
        for z, y, x in prompts.negative.astype(int):
            mask[z, y, x] = False
        return mask


class OracleEngine:
    name = "oracle"

    def __init__(self, gt):
        self.gt = gt

    def segment(self, image, spacing, prompts, prior=None, cancel=None):
        return self.gt.copy()


def _seven_by_seven():
    gt = np.zeros((1, 7, 7), bool)
    gt[0, 1:4, 1:4] = True  # a 3x3 square, centre (2, 2)
    gt[0, 5, 1:6] = True  # a one-pixel bar, 5 pixels
    return gt


def test_hand_computed_7x7():
    gt = _seven_by_seven()
    engine = SquareEngine()
    image = np.zeros((1, 1, 7, 7), np.float32)
    result = simulate_clicks(engine, image, (1.0, 1.0, 1.0), gt, max_clicks=3)
    # Click 1: deepest GT point = the square's centre (2 mm from outside; bar pixels 1 mm).
    # Mask = the square: TP 9, FN 5 -> Dice 18/23.
    # Click 2: the only error is the bar (missed, 5 px); all its pixels are 1 mm deep, the
    # tie goes to the first in C order, (5, 1). Mask += rows 4-6 x cols 0-2: TP 11, FP 7,
    # FN 3 -> Dice 22/32.
    # Click 3: false positives (4,0..2), (5,0), (6,0..2) form one 7-px region (> the 3 missed
    # pixels), every pixel 1 mm deep (row 6 lies on the image border, which counts as
    # outside): negative click at (4, 0). TP 11, FP 6, FN 3 -> Dice 22/31.
    assert result.clicks == [((0, 2, 2), True), ((0, 5, 1), True), ((0, 4, 0), False)]
    assert result.dice_per_click == pytest.approx([18 / 23, 22 / 32, 22 / 31])
    assert result.noc(0.80) == 3 and not result.noc_reached(0.80)  # capped at max_clicks
    d = result.as_dict()
    assert d["noc"] == {"80": 3, "85": 3, "90": 3}
    assert d["noc_reached"] == {"80": False, "85": False, "90": False}
    assert len(d["seconds_per_click"]) == 3 and all(s >= 0 for s in d["seconds_per_click"])
    # The engine saw every click so far, each time.
    assert [len(p.positive) + len(p.negative) for p in engine.calls] == [1, 2, 3]


def test_noc_counts_the_first_click_that_reaches_the_threshold():
    r = RobotResult(engine="x", max_clicks=5, dice_per_click=[0.5, 0.82, 0.86, 0.84, 0.91])
    assert (r.noc(0.80), r.noc(0.85), r.noc(0.90)) == (2, 3, 5)
    r = RobotResult(engine="x", max_clicks=5, dice_per_click=[0.5, 0.6, 0.7, 0.7, 0.7])
    assert r.noc(0.80) == 5 and not r.noc_reached(0.80)
    assert r.dice_at(1) == 0.5 and r.dice_at(5) == 0.7


def test_deepest_point_uses_mm():
    region = np.zeros((1, 5, 9), bool)
    region[0, :, :] = True
    # 1 mm steps: row 2, columns 2..6 lie 3 mm deep; the first wins (z, of length 1, is no
    # border). With x steps of 0.25 mm the centre column is deepest (1.25 mm), rows 1..3 tie.
    assert deepest_point(region, (1.0, 1.0, 1.0)) == (0, 2, 2)
    assert deepest_point(region, (1.0, 1.0, 0.25)) == (0, 1, 4)


def test_next_click_prefers_the_larger_error_and_none_when_perfect():
    gt = np.zeros((1, 9, 9), bool)
    gt[0, 1:4, 1:4] = True
    mask = gt.copy()
    mask[0, 5:9, 5:9] = True  # a 16-px false positive beats the missed pixel below
    mask[0, 2, 2] = False
    point, positive = next_click(mask, gt, (1, 1, 1))
    assert not positive and mask[point] and not gt[point]
    assert next_click(gt, gt, (1, 1, 1)) is None


def test_stops_early_when_perfect_and_reports_progress():
    gt = _seven_by_seven()
    events = list(iter_clicks(OracleEngine(gt), np.zeros((1, 1, 7, 7), np.float32), (1, 1, 1),
                              gt, max_clicks=10))
    # The never-worse rule keeps a click's change near the click: the oracle's bar, apart
    # from the square clicked first, waits for its own click.
    assert isinstance(events[0], RobotProgress) and events[0].dice == pytest.approx(18 / 23)
    assert events[1].positive and gt[events[1].point] and events[1].point[1] == 5
    result = events[-1]
    assert isinstance(result, RobotResult)
    assert result.dice_per_click == [pytest.approx(18 / 23), 1.0] and result.dice_at(10) == 1.0
    assert result.as_dict()["noc"] == {"80": 2, "85": 2, "90": 2}
    assert result.as_dict()["n_drops"] == 0


def test_prior_first_click_follows_the_error_and_perfect_prior_needs_none():
    gt = _seven_by_seven()
    prior = np.zeros_like(gt)
    prior[0, 1:4, 1:4] = True  # the square found, the bar missed
    engine = SquareEngine()
    result = simulate_clicks(engine, np.zeros((1, 1, 7, 7), np.float32), (1, 1, 1), gt,
                             max_clicks=1, prior=prior)
    assert result.dice_prior == pytest.approx(18 / 23)
    assert result.clicks == [((0, 5, 1), True)]
    perfect = simulate_clicks(engine, np.zeros((1, 1, 7, 7), np.float32), (1, 1, 1), gt,
                              max_clicks=4, prior=gt)
    assert perfect.dice_per_click == [] and perfect.noc(0.9) == 0


def test_bad_inputs_are_one_line_errors():
    gt = _seven_by_seven()
    with pytest.raises(TumorSegError, match="different grids"):
        simulate_clicks(SquareEngine(), np.zeros((1, 1, 7, 8), np.float32), (1, 1, 1), gt)
    with pytest.raises(TumorSegError, match="empty"):
        simulate_clicks(SquareEngine(), np.zeros((1, 1, 7, 7), np.float32), (1, 1, 1),
                        np.zeros_like(gt))


def test_classic_engine_on_a_bright_sphere_phantom():
    from napari_tumorseg.interactive.classic import ClassicEngine

    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:40, :64, :64]
    gt = (z - 20) ** 2 / 4.0 + (y - 30) ** 2 + (x - 34) ** 2 <= 12 ** 2  # 2 mm slices
    image = (100 + 60 * gt + rng.normal(0, 8, gt.shape)).astype(np.float32)
    image[:, :, :4] = 0  # some air, as around a head
    result = simulate_clicks(ClassicEngine(), image[None], (2.0, 1.0, 1.0), gt, max_clicks=3)
    assert result.clicks[0] == ((20, 30, 34), True)
    assert result.dice_at(1) > 0.9
