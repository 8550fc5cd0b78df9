"""The simulated user's geometry: deep first clicks, error clicks, neighbour-like masks."""

import numpy as np

from napari_tumorseg.interactive.simulate import deep_point, error_click, neighbour_like


def test_deep_point_is_the_distance_maximum_in_mm_and_jitter_stays_deep():
    mask = np.zeros((1, 30, 60), bool)
    mask[0, 5:25, 5:55] = True
    assert tuple(deep_point(mask[0], (1.0, 1.0))) in {(14, x) for x in range(14, 46)} | {(15, x) for x in range(14, 46)}
    # With 3 mm columns the object is 150 mm wide and 20 mm tall: still deepest mid-height.
    p = deep_point(mask[0], (1.0, 3.0))
    assert p[0] in (14, 15)
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = deep_point(mask[0], (1.0, 1.0), rng, jitter=0.3)
        assert mask[0][tuple(q)] and 5 + 6 <= q[0] <= 24 - 6  # at least 70 % of the depth
    assert deep_point(np.zeros((5, 5), bool), (1, 1)) is None


def test_error_click_goes_to_the_largest_error():
    gt = np.zeros((40, 40), bool)
    gt[5:25, 5:25] = True
    pred = np.zeros_like(gt)
    pred[5:25, 5:15] = True  # misses a 20x10 strip
    pred[30:34, 30:34] = True  # a 4x4 false positive
    point, positive = error_click(pred, gt, (1.0, 1.0))
    assert positive and gt[tuple(point)] and not pred[tuple(point)]
    pred[5:25, 5:25] = True
    point, positive = error_click(pred, gt, (1.0, 1.0))
    assert not positive and tuple(point) in {(31, 31), (31, 32), (32, 31), (32, 32)}
    assert error_click(gt, gt, (1.0, 1.0)) is None


def test_neighbour_like_masks_move_and_change_size_a_little():
    rng = np.random.default_rng(1)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 20:40] = True
    for _ in range(10):
        m = neighbour_like(mask, rng)
        assert m.any()
        inter = (m & mask).sum()
        assert inter > 0.3 * mask.sum()  # shifted at most 3 px, grown or shrunk by 3 px
    blob = neighbour_like(np.zeros((64, 64), bool), rng)
    assert 20 <= blob.sum() <= 400  # an empty slice gets a disk of radius 3-10


def test_slices_without_the_object_learn_negative_clicks():
    """A slice without the object (or an automatic sample) still gets the error rounds in
    training: a network that paints a false positive there is given a negative click on it,
    as a user would, so it learns to obey negative clicks where the target is absent."""
    import torch
    import torch.nn as nn

    from napari_tumorseg.interactive.encoding import ClickEncoding
    from napari_tumorseg.interactive.simulate import ClickSimulator

    class Everywhere(nn.Module):  # a false positive over the whole slice
        def forward(self, x):
            return torch.full((x.shape[0], 1, *x.shape[2:]), 5.0)

    sim = ClickSimulator(ClickEncoding(radius_mm=2.0, with_prev_mask=False), iterations=2,
                         no_click_fraction=0.0)
    y = torch.zeros(16, 1, 32, 32)  # no object on any sample
    x = torch.zeros(16, 1, 32, 32)
    _, clicks = sim.batch_inputs(Everywhere(), x, y, list(range(1, 17)), [(1.0, 1.0)] * 16, train=True)
    negatives = [len(neg) for pos, neg in clicks]
    assert all(not pos for pos, _ in clicks)
    assert 0 < sum(n > 0 for n in negatives) < 16  # about half of the samples, from their seeds


def test_restyled_samples_move_the_whole_boundary_and_their_clicks_land_in_the_rim():
    """With style_fraction a clicked sample's region is grown or shrunk by 1-4 px (another
    annotator's line): the target changes all round the boundary, the network's own answer
    (the original line) misses it in a rim, and the error clicks go into that rim. The
    caller's ``y`` is not changed; validation never restyles."""
    import torch
    import torch.nn as nn

    from napari_tumorseg.interactive.encoding import ClickEncoding
    from napari_tumorseg.interactive.simulate import ClickSimulator

    class Original(nn.Module):  # answers with the unrestyled regions (image channels 0-2)
        def forward(self, x):
            return (x[:, :3] - 0.5) * 10

    enc = ClickEncoding(radius_mm=2.0, targets=("whole", "core", "enhancing"))
    sim = ClickSimulator(enc, iterations=2, no_click_fraction=0.0, propagation_fraction=0.0,
                         style_fraction=1.0)
    n = 8
    y = torch.zeros(n, 3, 64, 64)
    y[:, 0, 16:48, 16:48] = 1
    y[:, 1, 24:40, 24:40] = 1
    y[:, 2, 28:36, 28:36] = 1
    x = torch.cat([y, torch.zeros(n, 1, 64, 64)], 1)
    y_before = y.clone()
    restyled = 0
    for start in (0, 8, 16):  # batches whose drawn error rounds are not all zero
        _, y2, clicks = sim.prepare(Original(), x, y, list(range(start, start + n)), [(1.0, 1.0)] * n, True)
        assert torch.equal(y, y_before)
        for i in range(n):
            changed = (y2[i] != y[i]).any(dim=(1, 2)).nonzero().flatten().tolist()
            if not changed:
                continue
            restyled += 1
            assert len(changed) == 1  # the clicked region only
            c = changed[0]
            new, old = y2[i, c] > 0.5, y[i, c] > 0.5
            grown = bool((new & ~old).any())
            assert grown != bool((old & ~new).any())  # grown or shrunk, not both
            rim = (new ^ old).numpy()
            # every side of the square moved: the rim surrounds the region
            ys, xs = np.nonzero(rim)
            assert ys.min() < old.nonzero()[:, 0].float().mean() < ys.max()
            assert xs.min() < old.nonzero()[:, 1].float().mean() < xs.max()
            pos, neg = clicks[i]
            errs = pos[1:] if grown else neg
            assert errs and all(rim[tuple(np.asarray(p, int))] for p in errs)
    assert restyled >= 8
    _, y_val, _ = sim.prepare(Original(), x, y, [None] * n, [(1.0, 1.0)] * n, False)
    assert torch.equal(y_val, y)


def test_a_one_object_mask_is_clicked_as_the_whole_tumour_only():
    """A sample whose core and enhancing are unknown (NaN: an LGG / COCO mask in a regions
    run) is only ever told "whole"; fully labelled samples still draw every target."""
    import torch
    import torch.nn as nn

    from napari_tumorseg.interactive.encoding import TARGET_CHANNEL, ClickEncoding
    from napari_tumorseg.interactive.simulate import ClickSimulator

    class Nothing(nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 3, *x.shape[2:]), -5.0)

    enc = ClickEncoding(radius_mm=2.0, with_prev_mask=False, targets=tuple(TARGET_CHANNEL))
    sim = ClickSimulator(enc, iterations=0, no_click_fraction=0.0)
    n = 40
    y = torch.zeros(n, 3, 32, 32)
    y[:, :, 8:24, 8:24] = 1.0
    y[n // 2:, 1:] = float("nan")  # the second half: one-object masks
    x = torch.zeros(n, 1, 32, 32)
    xin, _, _ = sim.prepare(Nothing(), x, y, list(range(1, n + 1)), [(1.0, 1.0)] * n, train=True)
    told = xin[:, -len(TARGET_CHANNEL):].flatten(2).amax(-1).argmax(1)  # the target plane set
    assert set(told[n // 2:].tolist()) == {TARGET_CHANNEL["whole"]}
    # fully labelled samples draw from every target, as before (the same draw from the seed)
    drawn = [int(np.random.default_rng([seed, 11]).integers(3)) for seed in range(1, n // 2 + 1)]
    assert told[:n // 2].tolist() == drawn and set(drawn) == {0, 1, 2}
