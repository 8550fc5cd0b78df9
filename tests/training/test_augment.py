"""Intensity augmentation (issue 15): scale, shift, gamma and a smooth bias field, inside the
foreground only, labels untouched, reproducible from the engine's per-sample seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.intensity import normalize_input
from napari_tumorseg.io.nifti import read_nifti
from napari_tumorseg.training.augment import AugmentConfig, augment, bias_field
from napari_tumorseg.training.datasets import SegDataset, _Prepared, sample_seed

CASE = "brats_multi_year/BraTS-GLI-00000-000"
ONLY = {"flips": False, "rotate": False, "blur": False, "contrast": False,
        "scale_p": 0.0, "shift_p": 0.0, "gamma_p": 0.0, "bias_p": 0.0, "lesion_contrast_p": 0.0}


@pytest.fixture(scope="module")
def brats_slices(shared_data):
    """Two robust-normalised channels (T2-FLAIR, T1c) of a raw BraTS 2023 case, a few
    slices through the tumour, with its labels (1, 2, 3)."""
    folder = shared_data / CASE
    vols = np.stack([read_nifti(folder / f"{folder.name}-{s}.nii.gz").data.astype(np.float32)
                     for s in ("t2f", "t1c")])
    labels = np.round(read_nifti(folder / f"{folder.name}-seg.nii.gz").data).astype(np.int64)
    zs = np.flatnonzero(labels.reshape(labels.shape[0], -1).any(axis=1))
    zs = zs[len(zs) // 2 - 2: len(zs) // 2 + 2]
    image = normalize_input(vols[:, zs], {"normalize": "robust"})
    return image, labels[zs]


def _sample(brats_slices, k: int = 0):
    image, labels = brats_slices
    return torch.from_numpy(image[:, k].copy()), torch.from_numpy(labels[k].copy())


@pytest.mark.parametrize("which", ["scale", "shift", "gamma", "bias"])
def test_each_transform_changes_the_foreground_only(brats_slices, which):
    x, y = _sample(brats_slices)
    fg = (x != 0).any(dim=0)
    assert 0.05 < float(fg.float().mean()) < 0.5
    cfg = AugmentConfig(**{**ONLY, f"{which}_p": 1.0})
    outs = []
    for seed in (0, 1, 2):
        xa, ya = augment(x, y, torch.Generator().manual_seed(seed), cfg)
        assert torch.equal(ya, y)  # labels kept
        assert torch.equal(xa[:, ~fg], x[:, ~fg])  # the background stays exactly background
        changed = (xa != x)[:, fg].float().mean()
        assert changed > 0.9, (which, float(changed))
        xb, _ = augment(x, y, torch.Generator().manual_seed(seed), cfg)
        assert torch.equal(xa, xb)  # reproducible with a seed
        outs.append(xa)
    assert not torch.equal(outs[0], outs[1])

    xa, _ = augment(x, y, torch.Generator().manual_seed(5), cfg)
    a, b = x[:, fg].double(), xa[:, fg].double()  # (c, n) foreground voxels
    for c in range(2):
        if which == "scale":
            ratio = b[c] / a[c]
            assert float(ratio.std()) < 1e-5 and 0.75 <= float(ratio.mean()) <= 1.25
        elif which == "shift":
            diff = b[c] - a[c]
            assert float(diff.std()) < 1e-5 and -0.3 <= float(diff.mean()) <= 0.3
        elif which == "gamma":
            # Gamma keeps the channel's foreground range and the order of its intensities.
            assert abs(float(b[c].min() - a[c].min())) < 1e-4 and abs(float(b[c].max() - a[c].max())) < 1e-4
            order = torch.argsort(a[c])
            assert bool((torch.diff(b[c][order]) >= -1e-5).all())
        else:
            # A multiplicative field on the intensity above the foreground minimum.
            ratio = (b[c] - a[c].min()) / (a[c] - a[c].min())
            ok = (a[c] - a[c].min()) > 0.5
            assert 0.7 - 1e-4 <= float(ratio[ok].min()) and float(ratio[ok].max()) <= 1.3 + 1e-4


@pytest.mark.parametrize("shape", [(128, 128), (24, 40, 32)])
def test_bias_field_is_smooth_and_within_its_range(shape):
    for seed in range(6):
        f = bias_field(shape, torch.Generator().manual_seed(seed), 0.7, 1.3).double()
        assert f.shape == shape
        assert float(f.min()) >= 0.7 - 1e-6 and float(f.max()) <= 1.3 + 1e-6
        assert float(f.max() - f.min()) > 1e-3  # a field, not a constant
        # Smooth: its log is a cubic along every axis (fourth differences vanish), so it
        # never changes by more than a small step between neighbours.
        log = torch.log(f)
        for axis in range(len(shape)):
            if shape[axis] > 4:
                assert float(np.abs(np.diff(log.numpy(), n=4, axis=axis)).max()) < 1e-4
            step = float(torch.diff(log, dim=axis).abs().max())
            assert step <= 30 * (math.log(1.3) - math.log(0.7)) / (shape[axis] - 1)
        again = bias_field(shape, torch.Generator().manual_seed(seed), 0.7, 1.3).double()
        assert torch.equal(f, again)


def test_switches_strength_and_config_checks(brats_slices):
    x, y = _sample(brats_slices)
    none = AugmentConfig(**{**ONLY, "scale_p": 1.0, "intensity": False})
    assert torch.equal(augment(x, y, torch.Generator().manual_seed(0), none)[0], x)
    off = AugmentConfig(**{**ONLY, "scale_p": 1.0, "strength": 0.0})
    assert augment(x, y, torch.Generator().manual_seed(0), off)[0] is x
    # Strength widens the ranges about "no change": 2 doubles the shift's reach.
    fg = (x != 0).any(dim=0)
    wide = AugmentConfig(**{**ONLY, "shift_p": 1.0, "shift_range": (0.2, 0.2), "strength": 2.0})
    xa, _ = augment(x, y, torch.Generator().manual_seed(0), wide)
    assert torch.allclose(xa[:, fg] - x[:, fg], torch.tensor(0.4), atol=1e-5)
    # Config files give lists; every check is one line.
    cfg = AugmentConfig.from_value({"gamma_range": [0.8, 1.2], "bias_p": 0.5})
    assert cfg.gamma_range == (0.8, 1.2) and cfg.bias_p == 0.5 and cfg.intensity
    for bad in ({"bias_range": [1.3, 0.7]}, {"scale_range": [0.0, 1.2]}, {"gamma_p": 1.5},
                {"shift_range": "x"}, {"bias_fields": 1}):
        with pytest.raises(TumorSegError):
            AugmentConfig.from_value(bad)


def test_on_by_default_in_the_cpu_recipe():
    from napari_tumorseg.models import get_recipe

    cfg = AugmentConfig.from_value(get_recipe("unet", "cpu").augmentation)
    assert cfg.enabled and cfg.intensity
    assert min(cfg.scale_p, cfg.shift_p, cfg.gamma_p, cfg.bias_p) > 0


def test_deterministic_under_the_engines_per_sample_seeds(brats_slices):
    image, labels = brats_slices
    target = (labels > 0).astype(np.float32)[None]
    case = _Prepared("p", "p", image, target, labels, (1.0, 1.0, 1.0))
    ds = SegDataset([case], AugmentConfig(), 1.0, seed=0)
    seeds = [sample_seed(7, epoch, pos) for epoch in (0, 1) for pos in range(len(ds))]
    first = [ds[(i % len(ds), s)] for i, s in enumerate(seeds)]
    again = [ds[(i % len(ds), s)] for i, s in enumerate(seeds)]
    for (xa, ya), (xb, yb) in zip(first, again):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # Another epoch, another draw of the same slice.
    assert not torch.equal(first[0][0], first[len(ds)][0])
    # Without a seed (validation) a sample is never augmented.
    assert torch.equal(ds[0][0], torch.from_numpy(image[:, 0]))


def test_lesion_contrast_scales_the_lesion_about_normal_tissue(brats_slices):
    x, y = _sample(brats_slices)
    fg = (x != 0).any(dim=0)
    lesion = y > 0
    cfg = AugmentConfig(**{**ONLY, "lesion_contrast_p": 1.0, "lesion_contrast_range": (0.5, 0.5)})
    xa, ya = augment(x, y, torch.Generator().manual_seed(0), cfg)
    assert torch.equal(ya, y)
    assert torch.equal(xa[:, ~fg], x[:, ~fg])
    # Inside the lesion the distance to the normal tissue's median halves; the taper lies
    # outside it, within two 5 x 5 means (4 px on each axis); farther out nothing moves.
    far = torch.from_numpy(ndimage.distance_transform_edt(~lesion.numpy()) > 4 * 2 ** 0.5) & fg
    assert torch.equal(xa[:, far], x[:, far])
    assert not torch.equal(xa[:, ~far & ~lesion & fg], x[:, ~far & ~lesion & fg])
    for c in range(2):
        ref = x[c][fg & ~lesion].median()
        assert torch.allclose(xa[c][lesion] - ref, 0.5 * (x[c][lesion] - ref), atol=1e-4)
    # a region-map target (r, y, x) with unknown (NaN) regions marks its lesion the same way
    regions = torch.stack([lesion.float(), torch.full(lesion.shape, float("nan")), torch.full(lesion.shape, float("nan"))])
    xr, _ = augment(x, regions, torch.Generator().manual_seed(0), cfg)
    assert torch.equal(xr, xa)
    # on by default (measured: see AugmentConfig); 0 switches it off without changing other draws
    assert AugmentConfig().lesion_contrast_p > 0
    x0, _ = augment(x, y, torch.Generator().manual_seed(0), AugmentConfig(**{**ONLY, "lesion_contrast_p": 0.0}))
    assert torch.equal(x0, x)
    with pytest.raises(TumorSegError, match="lesion_contrast_range"):
        AugmentConfig(lesion_contrast_range=(0.0, 1.0))


def test_gin_remaps_each_channel_inside_the_foreground_keeping_its_level(brats_slices):
    x, y = _sample(brats_slices)
    fg = (x != 0).any(dim=0)
    cfg = AugmentConfig(**{**ONLY, "gin_p": 1.0})
    xa, ya = augment(x, y, torch.Generator().manual_seed(3), cfg)
    assert torch.equal(ya, y)
    assert torch.equal(xa[:, ~fg], x[:, ~fg])  # background stays background
    for c in range(2):
        before, after = x[c][fg], xa[c][fg]
        # the channel's foreground level and spread are kept, its grey levels are not
        assert torch.isclose(after.mean(), before.mean(), atol=1e-3)
        assert torch.isclose(after.std(), before.std(), rtol=1e-3)
        assert not torch.allclose(after, before, atol=0.05)
    # another draw gives another map; the same draw the same one
    xb, _ = augment(x, y, torch.Generator().manual_seed(4), cfg)
    assert not torch.equal(xb, xa)
    assert torch.equal(augment(x, y, torch.Generator().manual_seed(3), cfg)[0], xa)
    with pytest.raises(TumorSegError, match="gin_layers"):
        AugmentConfig(gin_layers=0)
    with pytest.raises(TumorSegError, match="gin_p"):
        AugmentConfig(gin_p=1.5)


def test_periphery_brightens_the_brains_rim_not_its_centre(brats_slices):
    x, y = _sample(brats_slices)
    fg = (x != 0).any(dim=0)
    cfg = AugmentConfig(**{**ONLY, "periphery_p": 1.0, "periphery_range": (0.4, 0.4),
                           "periphery_width": (6.0, 6.0)})
    xa, ya = augment(x, y, torch.Generator().manual_seed(0), cfg)
    assert torch.equal(ya, y)
    assert torch.equal(xa[:, ~fg], x[:, ~fg])
    depth = torch.from_numpy(ndimage.distance_transform_edt(fg.numpy()))
    rim, deep = fg & (depth <= 2), fg & (depth > 20)
    gain = xa - x
    assert bool((gain[:, fg] >= -1e-5).all())  # a brightening field: nothing darker
    assert float(gain[:, rim].mean()) > 0.2
    assert torch.allclose(xa[:, deep], x[:, deep], atol=1e-4)
    with pytest.raises(TumorSegError, match="periphery_range"):
        AugmentConfig(periphery_range=(0.5, 0.1))


def test_zoom_scales_image_and_mask_together_and_is_drawn_only_when_asked_for(brats_slices):
    x, y = _sample(brats_slices)
    area = int((y > 0).sum())
    cfg = AugmentConfig(**{**ONLY, "intensity": False, "zoom_p": 1.0, "zoom_range": (1.25, 1.25)})
    xa, ya = augment(x, y, torch.Generator().manual_seed(0), cfg)
    # 1.25 x in each direction: the lesion's area x 1.56 (nearest-neighbour edges aside)
    assert 1.4 < int((ya > 0).sum()) / area < 1.75
    assert set(torch.unique(ya).tolist()) <= set(torch.unique(y).tolist())  # labels, not blends
    # the image moved with the mask: the enlarged lesion is bright on FLAIR where it lies now
    assert float(xa[0][ya > 0].mean()) > float(xa[0][(ya == 0) & (xa[0] != 0)].mean()) + 0.5
    shrink = AugmentConfig(**{**ONLY, "intensity": False, "zoom_p": 1.0, "zoom_range": (0.8, 0.8)})
    xs, ys = augment(x, y, torch.Generator().manual_seed(0), shrink)
    assert 0.5 < int((ys > 0).sum()) / area < 0.75
    assert bool((xs[:, :2] == 0).all())  # zoomed out: the border is background (0), not smeared
    # Off by default, and then it draws nothing: the default augmentation stream is unchanged.
    assert AugmentConfig().zoom_p == 0.0
    full = AugmentConfig()
    a = augment(x, y, torch.Generator().manual_seed(5), full)
    b = augment(x, y, torch.Generator().manual_seed(5), AugmentConfig(zoom_range=(0.5, 2.0)))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(TumorSegError, match="zoom_range"):
        AugmentConfig(zoom_range=(0.0, 1.2))


def test_strength_scales_how_often_a_zoom_is_drawn(brats_slices):
    """The Train dock's strength scales every augmentation's probability, the zoom's too:
    zoom_p 0.6 at strength 0.5 zooms about 3 samples in 10, at strength 2 every one."""
    x, y = _sample(brats_slices)
    area = int((y > 0).sum())

    def zoomed(strength, n=40):
        cfg = AugmentConfig(**{**ONLY, "intensity": False, "zoom_p": 0.6, "zoom_range": (1.25, 1.25),
                               "strength": strength})
        gen = torch.Generator().manual_seed(0)
        return sum(int((augment(x, y, gen, cfg)[1] > 0).sum()) != area for _ in range(n)) / n

    assert 0.15 <= zoomed(0.5) <= 0.45
    assert zoomed(2.0) == 1.0
