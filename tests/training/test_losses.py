"""Every loss against values worked out by hand (math on scalars), MONAI as a second oracle,
and the BraTS region mapping on real labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.training.losses import (
    DeepSupervisionLoss,
    build_loss,
    downsample_target,
    soft_dice_loss,
)

LOGITS = [0.0, 2.0, -1.0, 3.0]
TARGET = [0.0, 1.0, 1.0, 0.0]


def sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def hand_bce(logits, target) -> float:
    return sum(-(t * math.log(sig(z)) + (1 - t) * math.log(1 - sig(z)))
               for z, t in zip(logits, target)) / len(logits)


def hand_dice(logits, target, smooth=1e-5, squared=False) -> float:
    p = [sig(z) for z in logits]
    inter = sum(a * b for a, b in zip(p, target))
    if squared:
        den = sum(a * a for a in p) + sum(b * b for b in target)
    else:
        den = sum(p) + sum(target)
    return 1.0 - (2 * inter + smooth) / (den + smooth)


def as_tensors(logits=LOGITS, target=TARGET):
    return (torch.tensor(logits, dtype=torch.float64).reshape(1, 1, 2, 2),
            torch.tensor(target, dtype=torch.float64).reshape(1, 1, 2, 2))


def test_bce_matches_hand_value():
    x, y = as_tensors()
    got = float(build_loss("bce")(x, y))
    assert got == pytest.approx(hand_bce(LOGITS, TARGET), rel=1e-6)
    # 0.6931 + 0.1269 + 1.3133 + 3.0486 over 4
    assert got == pytest.approx(1.29548, abs=1e-4)


def test_soft_dice_matches_hand_value_and_monai():
    from monai.losses import DiceLoss

    x, y = as_tensors()
    got = float(build_loss("dice")(x, y))
    assert got == pytest.approx(hand_dice(LOGITS, TARGET), rel=1e-6)
    # p = .5, .8808, .2689, .9526: 1 - 2*1.1497 / (2.6023 + 2)
    assert got == pytest.approx(1 - 2 * (sig(2) + sig(-1)) / (0.5 + sig(2) + sig(-1) + sig(3) + 2), rel=1e-5)
    assert got == pytest.approx(float(DiceLoss(sigmoid=True)(x, y)), rel=1e-5)
    sq = float(build_loss("dice", squared=True)(x, y))
    assert sq == pytest.approx(hand_dice(LOGITS, TARGET, squared=True), rel=1e-6)
    assert sq == pytest.approx(float(DiceLoss(sigmoid=True, squared_pred=True)(x, y)), rel=1e-5)


def test_dice_is_per_sample_unless_batch():
    x = torch.tensor([[2.0, -2.0], [-2.0, 2.0]]).reshape(2, 1, 1, 2)
    y = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).reshape(2, 1, 1, 2)
    per = [hand_dice([2, -2], [1, 0]), hand_dice([-2, 2], [0, 0])]
    assert float(soft_dice_loss(x, y)) == pytest.approx(sum(per) / 2, rel=1e-6)
    assert float(soft_dice_loss(x, y, batch=True)) == pytest.approx(
        hand_dice([2, -2, -2, 2], [1, 0, 0, 0]), rel=1e-6)


@pytest.mark.parametrize("alpha", [0.7, 0.5])
def test_combo_is_alpha_bce_plus_one_minus_alpha_dice(alpha):
    x, y = as_tensors()
    want = alpha * hand_bce(LOGITS, TARGET) + (1 - alpha) * hand_dice(LOGITS, TARGET)
    assert float(build_loss("combo", alpha=alpha)(x, y)) == pytest.approx(want, rel=1e-6)


def test_bce_plus_lambda_dice():
    x, y = as_tensors()
    want = hand_bce(LOGITS, TARGET) + 0.5 * hand_dice(LOGITS, TARGET)
    assert float(build_loss("bce_dice", lam=0.5)(x, y)) == pytest.approx(want, rel=1e-6)
    assert float(build_loss("bce_dice", **{"lambda": 0.5})(x, y)) == pytest.approx(want, rel=1e-6)


def hand_ce(logit_rows, classes) -> float:
    total = 0.0
    for row, c in zip(logit_rows, classes):
        lse = math.log(sum(math.exp(v) for v in row))
        total += lse - row[c]
    return total / len(classes)


def test_cross_entropy_for_segformer_and_classifier():
    # SegFormer: 2 class logits per pixel, target 0/1 map.
    rows = [[1.0, -1.0], [0.5, 2.0], [0.0, 0.0], [3.0, 1.0]]
    classes = [0, 1, 1, 1]
    x = torch.tensor(rows).T.reshape(1, 2, 2, 2)
    y = torch.tensor(classes).reshape(1, 2, 2)
    assert float(build_loss("ce", mode="multiclass")(x, y)) == pytest.approx(hand_ce(rows, classes), rel=1e-6)
    # Classifier: (N, K) logits, (N,) classes.
    rows4 = [[2.0, 0.0, -1.0, 0.5], [0.1, 0.2, 0.3, 0.4]]
    assert float(build_loss("ce", mode="classes")(torch.tensor(rows4), torch.tensor([0, 3]))) == \
        pytest.approx(hand_ce(rows4, [0, 3]), rel=1e-6)


def test_dice_ce_softmax_matches_hand_value():
    rows = [[1.0, -1.0], [0.5, 2.0], [0.0, 0.0], [3.0, 1.0]]
    classes = [0, 1, 1, 1]
    x = torch.tensor(rows).T.reshape(1, 2, 2, 2)
    y = torch.tensor(classes).reshape(1, 2, 2)
    probs = [[math.exp(v) / sum(math.exp(u) for u in r) for v in r] for r in rows]
    dice = 0.0
    for k in range(2):
        p = [pr[k] for pr in probs]
        t = [1.0 if c == k else 0.0 for c in classes]
        dice += (2 * sum(a * b for a, b in zip(p, t)) + 1e-5) / (sum(p) + sum(t) + 1e-5)
    want = (1 - dice / 2) + hand_ce(rows, classes)
    assert float(build_loss("dice_ce", mode="multiclass")(x, y)) == pytest.approx(want, rel=1e-6)


def test_deep_supervision_weights_and_downsampled_targets():
    """dice_ce on region outputs, two scales: L = L(full) + 1/2 L(half) with the target
    taken by nearest neighbour at the half scale."""
    full_logits = [0.0, 2.0, -1.0, 3.0, 1.0, -2.0, 0.5, -0.5, 1.5, -1.5, 2.5, 0.2, -0.2, 0.7, -3.0, 1.1]
    full_t = [1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1]
    half_logits = [0.3, -0.4, 1.2, -2.0]
    x_full = torch.tensor(full_logits).reshape(1, 1, 4, 4)
    x_half = torch.tensor(half_logits).reshape(1, 1, 2, 2)
    y = torch.tensor(full_t, dtype=torch.float32).reshape(1, 1, 4, 4)
    half_t = downsample_target(y, (2, 2), "regions")
    # nearest from 4x4 to 2x2 keeps rows/cols 0 and 2
    assert half_t.flatten().tolist() == [1.0, 0.0, 0.0, 1.0]
    loss = build_loss("dice_ce", mode="regions", deep_supervision_weights=[1, 0.5, 0.25, 0.125])
    assert isinstance(loss, DeepSupervisionLoss)
    want = (hand_bce(full_logits, full_t) + hand_dice(full_logits, full_t)
            + 0.5 * (hand_bce(half_logits, [1, 0, 0, 1]) + hand_dice(half_logits, [1, 0, 0, 1])))
    assert float(loss([x_full, x_half], y)) == pytest.approx(want, rel=1e-5)
    # A single (eval-mode) output is the plain loss.
    assert float(loss(x_full, y)) == pytest.approx(
        hand_bce(full_logits, full_t) + hand_dice(full_logits, full_t), rel=1e-5)


def test_build_loss_from_presets_and_errors():
    from napari_tumorseg.models import get_info

    unet = build_loss(get_info("unet").preset, mode="binary")  # "variants" is documentation
    x, y = as_tensors()
    assert float(unet(x.float(), y.float())) == pytest.approx(hand_bce(LOGITS, TARGET), rel=1e-5)
    glims = get_info("glims")
    loss = build_loss(glims.preset, mode=glims.output)
    assert isinstance(loss, DeepSupervisionLoss) or glims.preset.deep_supervision_weights is None
    with pytest.raises(TumorSegError, match="unknown loss"):
        build_loss("focal")
    with pytest.raises(TumorSegError, match="does not take"):
        build_loss("combo", beta=1)
    with pytest.raises(TumorSegError, match="alpha"):
        build_loss("combo", alpha=1.5)
    with pytest.raises(TumorSegError, match="sigmoid"):
        build_loss("bce", mode="multiclass")


def test_glims_preset_matches_monai_dicece():
    """The GLIMS preset quotes MONAI's DiceCELoss(sigmoid, squared_pred, smooth_nr/dr): our
    Dice term equals MONAI's DiceLoss with those settings; the CE term is per-region BCE
    (MONAI's DiceCELoss would apply a softmax CE across the nested WT/TC/ET channels)."""
    from monai.losses import DiceLoss

    from napari_tumorseg.models import get_info

    preset = get_info("glims").preset
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 4, 4, generator=g)
    y = (torch.rand(2, 3, 4, 4, 4, generator=g) > 0.6).float()
    ours = build_loss(preset.loss, mode="regions", **preset.loss_params)
    kw = {k: v for k, v in preset.loss_params.items() if not k.startswith("lambda")}
    want = DiceLoss(**kw)(x, y) + torch.nn.functional.binary_cross_entropy_with_logits(x, y)
    assert float(ours(x, y)) == pytest.approx(float(want), rel=1e-5)


def test_unknown_region_maps_are_left_out_of_the_loss():
    """A one-object mask in a regions run marks core and enhancing unknown (NaN): those maps
    add nothing and get no gradient; with every map known the loss is the usual one."""
    torch.manual_seed(0)
    for spec in ("bce_dice", "dice"):
        loss_fn = build_loss(spec, mode="regions")
        logits = torch.randn(4, 3, 16, 16)
        target = (torch.rand(4, 3, 16, 16) > 0.7).float()
        full = loss_fn(logits, target)
        assert torch.allclose(loss_fn._partial(logits, target, torch.zeros_like(target, dtype=torch.bool)), full)
        partial = target.clone()
        partial[1:3, 1:] = float("nan")  # two samples know their whole tumour only
        lg = logits.clone().requires_grad_(True)
        value = loss_fn(lg, partial)
        assert torch.isfinite(value)
        value.backward()
        assert float(lg.grad[1:3, 1:].abs().max()) == 0.0
        assert float(lg.grad[1:3, 0].abs().max()) > 0.0 and float(lg.grad[0].abs().max()) > 0.0
        changed = logits.clone()
        changed[1:3, 1:] = 50.0  # anything there
        assert torch.allclose(loss_fn(changed, partial), value.detach())
        # the same as the loss over the labelled samples alone, channel by channel
        only = [loss_fn(logits[i:i + 1, c:c + 1], target[i:i + 1, c:c + 1])
                for i in range(4) for c in range(3) if not (1 <= i < 3 and c > 0)]
        if spec == "dice":
            assert float(value) == pytest.approx(float(torch.stack(only).mean()), rel=1e-5)
    everything_unknown = torch.full((2, 3, 8, 8), float("nan"))
    lg = torch.randn(2, 3, 8, 8, requires_grad=True)
    out = build_loss("bce_dice", mode="regions")(lg, everything_unknown)
    out.backward()
    assert float(out) == 0.0 and float(lg.grad.abs().max()) == 0.0


def hand_tversky(logits, target, beta, smooth=1e-5) -> float:
    p = [sig(z) for z in logits]
    tp = sum(a * b for a, b in zip(p, target))
    fp = sum(a * (1 - b) for a, b in zip(p, target))
    fn = sum((1 - a) * b for a, b in zip(p, target))
    return 1.0 - (tp + smooth) / (tp + (1 - beta) * fp + beta * fn + smooth)


@pytest.mark.parametrize("beta", [0.5, 0.7, 0.9])
def test_fn_weight_makes_the_dice_term_tversky(beta):
    """``fn_weight`` beta: 1 - TP / (TP + (1 - beta) FP + beta FN), by hand; beta 0.5 is Dice.
    The same on the path that leaves unknown region maps out."""
    x, y = as_tensors()
    got = float(build_loss("dice", fn_weight=beta)(x, y))
    assert got == pytest.approx(hand_tversky(LOGITS, TARGET, beta), rel=1e-6)
    if beta == 0.5:  # the same but for where the smoothing term sits
        assert got == pytest.approx(hand_dice(LOGITS, TARGET), rel=1e-5)
    both = float(build_loss("bce_dice", fn_weight=beta)(x, y))
    assert both == pytest.approx(hand_bce(LOGITS, TARGET) + hand_tversky(LOGITS, TARGET, beta), rel=1e-6)
    torch.manual_seed(1)
    logits = torch.randn(3, 3, 8, 8)
    target = (torch.rand(3, 3, 8, 8) > 0.6).float()
    loss_fn = build_loss("bce_dice", mode="regions", fn_weight=beta)
    unknown = torch.zeros_like(target, dtype=torch.bool)
    assert torch.allclose(loss_fn._partial(logits, target, unknown), loss_fn(logits, target))


def test_tversky_costs_a_miss_more_than_a_false_voxel():
    """A rim drawn one voxel too thin on each side against one drawn one voxel too wide:
    Dice already prefers the wide one a little (0.20 / 0.14), Tversky beta 0.7 much more."""
    truth = torch.zeros(1, 1, 1, 12)
    truth[..., 3:9] = 1
    thin = torch.full_like(truth, -12.0)
    thin[..., 4:8] = 12.0  # TP 4, FN 2
    wide = torch.full_like(truth, -12.0)
    wide[..., 2:10] = 12.0  # TP 6, FP 2
    dice, tversky = build_loss("dice"), build_loss("dice", fn_weight=0.7)
    assert float(dice(thin, truth)) == pytest.approx(2 / 10, rel=1e-3)
    assert float(dice(wide, truth)) == pytest.approx(2 / 14, rel=1e-3)
    assert float(tversky(thin, truth)) == pytest.approx(1 - 4 / 5.4, rel=1e-3)
    assert float(tversky(wide, truth)) == pytest.approx(1 - 6 / 6.6, rel=1e-3)
    with pytest.raises(TumorSegError, match=r"\(0, 1\)"):
        build_loss("dice", fn_weight=1.0)(thin, truth)


@pytest.mark.parametrize("batch", [False, True])
def test_one_fn_weight_per_region(batch):
    """[0.5, 0.5, 0.9]: Dice for the whole tumour and core, Tversky 0.9 for the enhancing
    output, channel by channel, on both loss paths (all maps known; some unknown)."""
    torch.manual_seed(2)
    logits = torch.randn(4, 3, 8, 8)
    target = (torch.rand(4, 3, 8, 8) > 0.6).float()
    mixed = build_loss("dice", mode="regions", fn_weight=[0.5, 0.5, 0.9], batch=batch)
    per = [build_loss("dice", mode="regions", fn_weight=b, batch=batch)(logits[:, c:c + 1], target[:, c:c + 1])
           for c, b in enumerate([0.5, 0.5, 0.9])]
    assert float(mixed(logits, target)) == pytest.approx(float(torch.stack(per).mean()), rel=1e-6)
    unknown = torch.zeros_like(target, dtype=torch.bool)
    assert float(mixed._partial(logits, target, unknown)) == pytest.approx(float(mixed(logits, target)), rel=1e-6)
    partial = target.clone()
    partial[1:3, 1:] = float("nan")
    assert torch.isfinite(mixed(logits, partial))
    with pytest.raises(TumorSegError, match="2 fn_weight values for 3"):
        build_loss("dice", mode="regions", fn_weight=[0.5, 0.9])(logits, target)
