"""The never-worse rule (interactive.guard) and the click targets (interactive.targets), on
hand-made masks and with the click robot on real BraTS cases (cropped around the tumour)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_tumorseg.cli.evaluate_clicks import load_image
from napari_tumorseg.interactive.classic import ClassicEngine
from napari_tumorseg.interactive.engines import segment_with_prompts
from napari_tumorseg.interactive.guard import DROP, hold_to_clicks, new_clicks
from napari_tumorseg.interactive.prompts import Prompts
from napari_tumorseg.interactive.robot import RobotProgress, iter_clicks
from napari_tumorseg.interactive.targets import target_channels, target_truth
from napari_tumorseg.io.readers import read_path


def test_positive_inside_negative_outside_and_far_changes_kept_back():
    shape = (1, 40, 40)
    old = np.zeros(shape, bool)
    old[0, 5:15, 5:15] = True  # what is on screen
    before = Prompts().with_click((0, 10, 10), True)
    prompts = before.with_click((0, 30, 30), True).with_click((0, 20, 5), False)
    engine_answer = np.zeros(shape, bool)
    engine_answer[0, 25:35, 25:28] = True  # near the new positive click, but not on it
    engine_answer[0, 18:23, 3:8] = True  # over the new negative click
    # ... and the engine lost the old square, far from both new clicks.
    out = hold_to_clicks(engine_answer, prompts, (1, 1, 1), previous=(before, old))
    assert out[0, 30, 30], "a positive click is inside"
    assert not out[0, 20, 5], "a negative click is outside"
    assert out[0, 10, 10], "the earlier positive click stays inside"
    assert out[0, 5:15, 5:15].all(), "the square, lost far from the new clicks, is back"
    # The change touching no new click is not taken: the bar at x 25-27 lies apart from
    # (0, 30, 30), whose own small ball is added instead.
    assert not out[0, 25, 25]
    assert 5 <= out[0, 27:34, 27:34].sum() <= 25


def test_a_positive_click_adds_near_itself_not_a_leak_across_the_image():
    shape = (1, 100, 100)
    old = np.zeros(shape, bool)
    old[0, 40:60, 10:30] = True
    before = Prompts().with_click((0, 50, 20))
    prompts = before.with_click((0, 50, 34))  # 5 px from the answer on screen
    leak = old.copy()
    leak[0, :, 30:] = True  # the engine floods everything right of the square
    out = hold_to_clicks(leak, prompts, (1, 1, 1), previous=(before, old))
    added = np.argwhere(out[0] & ~old[0])
    assert out[0, 50, 34] and len(added) > 100
    assert (np.hypot(*(added - (50, 34)).T) <= 20.0 + 1e-9).all()  # 4 x 5 px (the floor is 15)
    assert not out[0, 50, 60] and not out[0, 5, 90]


def test_a_negative_click_cuts_round_not_straight():
    """A leak as bright as the tumour it hangs on: the negative click in it takes a round bite
    (within half the way to the positive click), not a straight cut across the leak."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :96]
    disc = (yy - 48) ** 2 + (xx - 30) ** 2 <= 15 ** 2
    leak = (yy >= 28) & (yy <= 68) & (xx >= 42) & (xx <= 80)
    head = (yy - 48) ** 2 + (xx - 48) ** 2 <= 47 ** 2
    image = (20 + 80 * head + 100 * (disc | leak) + rng.normal(0, 5, disc.shape)).astype(np.float32)[None, None]
    engine = ClassicEngine()
    first = Prompts().with_click((0, 48, 30))
    m1 = segment_with_prompts(engine, image, (1, 1, 1), first)
    assert m1[0][disc].all() and m1[0][leak].mean() > 0.9  # the leak came with the tumour
    second = first.with_click((0, 48, 62), False)
    m2 = segment_with_prompts(engine, image, (1, 1, 1), second, previous=(first, m1))
    removed = m1 & ~m2
    assert removed[0, 48, 62] and m2[0][disc].all()
    # Within half the way (32 px) to the positive click, plus a voxel.
    assert (np.hypot(*(np.argwhere(removed[0]) - (48, 62)).T) <= 17).all()
    # The cut's edge (removed voxels beside kept ones) is no straight line.
    from scipy import ndimage

    edge = np.argwhere(removed[0] & ndimage.binary_dilation(m2[0])).astype(float)
    residual = np.linalg.svd(edge - edge.mean(0), compute_uv=False)[-1] / np.sqrt(len(edge))
    assert residual > 3.0, f"a straight cut (line fit residual {residual:.2f} px)"


def test_a_negative_click_never_adds():
    shape = (1, 40, 40)
    old = np.zeros(shape, bool)
    old[0, 10:20, 10:20] = True
    before = Prompts().with_click((0, 15, 15))
    prompts = before.with_click((0, 18, 18), False)
    engine_answer = old.copy()
    engine_answer[0, 18:30, 18:30] = True  # grown right at the negative click
    out = hold_to_clicks(engine_answer, prompts, (1, 1, 1), previous=(before, old))
    assert not (out & ~old).any() and not out[0, 18, 18] and out[0, 15, 15]


def test_an_undo_or_a_box_is_a_fresh_answer():
    a = Prompts().with_click((0, 1, 1)).with_click((0, 2, 2))
    assert new_clicks(a, Prompts().with_click((0, 1, 1)))[0].shape == (1, 3)
    assert new_clicks(Prompts().with_click((0, 1, 1)), a) is None
    assert new_clicks(Prompts(box=(0, 1, 1, 5, 5)), Prompts()) is None


def test_targets_follow_each_editions_labels():
    labels = np.array([0, 1, 2, 3, 4])
    assert target_truth(labels, "lesion").tolist() == [False, True, True, True, True]
    # BraTS 2017-2021 (4 = enhancing) vs 2023 (3 = enhancing), from the case names.
    assert target_truth(labels, "enhancing", names=["BraTS2021_00002_seg.nii.gz"]).tolist() == [0, 0, 0, 0, 1]
    assert target_truth(labels, "enhancing", names=["BraTS-GLI-00000-000-seg.nii.gz"]).tolist() == [0, 0, 0, 1, 0]
    assert target_truth(labels, "core", names=["BraTS2021_00002"]).tolist() == [0, 1, 0, 1, 1]
    assert target_truth(np.array([0, 1, 2]), "whole").tolist() == [0, 1, 1]  # 2012 by its values
    names = ["BraTS2021_00002_flair", "BraTS2021_00002_t1", "BraTS2021_00002_t1ce", "BraTS2021_00002_t2"]
    for target in ("lesion", "whole", "core", "enhancing"):
        idx = target_channels(names, target)
        assert idx is None or all(0 <= i < 4 for i in idx)
    assert target_channels(["a", "b"], "core") is None  # unnamed channels: all of them


def _crop_case(case, seg, target, half=(24, 48, 48)):
    """The case's channels and the target's truth, cropped around the target's centre."""
    _, image, names = load_image(str(case), None)
    gt = target_truth(read_path(seg)[0].data, target, names=[case.name, seg.name])
    centre = [int(np.mean(ix)) for ix in np.nonzero(gt)]
    box = tuple(slice(max(0, c - h), c + h) for c, h in zip(centre, half))
    return np.ascontiguousarray(image[(slice(None),) + box]), gt[box], names


CASES = [
    ("brats_multi_year/BraTS2021_00006", "BraTS2021_00006_seg.nii.gz", "whole"),
    ("brats_multi_year/BraTS-GLI-00000-000", "BraTS-GLI-00000-000-seg.nii.gz", "core"),
    ("brats2013_deepmedic/validation/brats_2013_pat0003_1", "OTMultiClass.nii.gz", "whole"),
]


@pytest.mark.parametrize("folder,seg,target", CASES)
def test_robot_on_real_cases_every_click_holds(shared_data, folder, seg, target):
    case = shared_data / folder
    image, gt, names = _crop_case(case, case / seg, target)
    steps, result = [], None
    for event in iter_clicks(ClassicEngine(), image, (1.0, 1.0, 1.0), gt, max_clicks=6, target=target,
                             channel_names=names):
        if isinstance(event, RobotProgress):
            steps.append(event)
        else:
            result = event
    clicks = []
    for step in steps:
        clicks.append((step.point, step.positive))
        for point, positive in clicks:
            assert step.mask[point] == positive, f"click {step.click}: {point} {'+' if positive else '-'}"
    d = result.as_dict()
    print(f"\n{case.name} {target} {image.shape}: Dice " + " ".join(f"{x:.3f}" for x in result.dice_per_click)
          + f"; drops (> {DROP}): {d['n_drops']} {d['drops']}")
    assert d["n_drops"] == len(result.drops)
    assert all(a - b > DROP for _, a, b in result.drops)
    assert d["n_drops"] == 0, f"a click lowered Dice by more than {DROP}: {d['drops']}"


def test_segment_with_prompts_gives_the_classic_engine_the_targets_channels(shared_data):
    case = shared_data / "brats_multi_year" / "BraTS2021_00006"
    image, gt, names = _crop_case(case, case / "BraTS2021_00006_seg.nii.gz", "enhancing", (8, 32, 32))
    seen = []

    class Spy(ClassicEngine):
        def segment(self, image, spacing, prompts, prior=None, cancel=None):
            seen.append(image.shape[0])
            return super().segment(image, spacing, prompts, prior=prior, cancel=cancel)

    engine = Spy()
    point = tuple(int(np.mean(ix)) for ix in np.nonzero(gt))
    for target in ("lesion", "enhancing"):
        segment_with_prompts(engine, image, (1, 1, 1), Prompts().with_click(point), target=target,
                             channel_names=names)
    want = target_channels(names, "enhancing")
    assert seen == [4, 4 if want is None else len(want)]
