"""The intensity rule of napari_tumorseg.intensity on every shared data set, and its promise
(issue 15): one model gives the same mask on a raw scan and on a copy z-scored with a
constant background, the way BraTS 2013 was shipped."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_tumorseg.intensity import (
    BACKGROUND,
    foreground_mask,
    normalize_input,
    normalize_intensity,
)
from napari_tumorseg.io.images import read_raster
from napari_tumorseg.io.nifti import read_nifti
from napari_tumorseg.training.preprocessing import (
    Preprocessing,
    apply_preprocessing,
    preprocess_labels,
)

RAW_CASE = "brats_multi_year/BraTS2021_00002"
SEQUENCES = ("flair", "t1", "t1ce", "t2")


def dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def zscored_2013_way(czyx: np.ndarray, over: str = "all") -> np.ndarray:
    """Each channel z-scored as BraTS 2013 was shipped: statistics over every voxel
    (``over="all"``) or over the brain (``"brain"``, DeepMedic's files: background -3.55),
    applied to every voxel, so the background becomes one negative constant per channel."""
    out = []
    for ch in czyx.astype(np.float64):
        vals = ch if over == "all" else ch[ch != 0]
        out.append((ch - vals.mean()) / vals.std())
    return np.stack(out).astype(np.float32)


@pytest.fixture(scope="module")
def raw_case(shared_data):
    folder = shared_data / RAW_CASE
    name = folder.name
    image = np.stack([read_nifti(folder / f"{name}_{s}.nii.gz").data.astype(np.float32) for s in SEQUENCES])
    labels = np.round(read_nifti(folder / f"{name}_seg.nii.gz").data).astype(np.int64)
    return image, labels


# ----------------------------------------------------------------------------- the foreground


def test_foreground_of_zscored_brats2013_is_its_brainmask(shared_data):
    case = shared_data / "brats2013_deepmedic" / "validation" / "brats_2013_pat0003_1"
    brain = read_nifti(case / "brainmask.nii.gz").data > 0.5
    for name in ("Flair_subtrMeanDivStd", "T1c_subtrMeanDivStd"):
        vol = read_nifti(case / f"{name}.nii.gz").data
        assert vol.min() < -2.0 and np.mean(vol == vol.min()) > 0.5  # background: a negative constant
        assert dice(foreground_mask(vol), brain) > 0.995, name


@pytest.mark.parametrize("path", [
    "brats2012_hg0015/BRATS_HG0015_FLAIR.nii.gz",
    "brats_multi_year/Brats17_2013_27_1/Brats17_2013_27_1_t1.nii.gz",
    "brats_multi_year/BraTS2021_00006/BraTS2021_00006_t2.nii.gz",
    "brats_multi_year/BraTS-GLI-00000-000/BraTS-GLI-00000-000-t2f.nii.gz",
])
def test_foreground_of_raw_brats_is_the_scanned_brain(shared_data, path):
    vol = read_nifti(shared_data / path).data
    assert dice(foreground_mask(vol), vol != 0) > 0.995


def test_foreground_of_brainix_is_the_head(shared_data):
    from napari_tumorseg.io.readers import read_path

    flair = read_path(shared_data / "dicom_brainix" / "FLAIR")[0]
    roi = np.asarray(read_path(shared_data / "dicom_brainix" / "ROI")[0].data) > 0
    fg = foreground_mask(np.asarray(flair.data))
    # A noisy background (zero-filled corners, noise of a few grey levels) is found, the head kept.
    assert 0.25 < fg.mean() < 0.6
    assert fg[roi].mean() > 0.999
    assert not fg[:, :10, :10].any() and not fg[:, -10:, -10:].any()


def _lgg_slices(shared_data, n_per_patient: int = 3):
    out = []
    for patient in sorted(p for p in (shared_data / "lgg_kaggle3m").iterdir() if p.is_dir()):
        masks = sorted(patient.glob("*_mask.tif"))
        with_tumour = [m for m in masks if read_raster(m)[0].max() > 0]
        for m in with_tumour[:: max(1, len(with_tumour) // n_per_patient)][:n_per_patient]:
            image = read_raster(m.with_name(m.name.replace("_mask", "")))[0]
            out.append((image, read_raster(m)[0].max(axis=0)[0] > 0))
    return out


def test_foreground_of_lgg_slices_holds_the_tumour(shared_data):
    slices = _lgg_slices(shared_data)
    assert len(slices) == 6
    for image, tumour in slices:
        assert image.shape == (3, 1, 256, 256)  # pre-contrast, FLAIR, post-contrast
        for c in range(3):
            fg = foreground_mask(image[c])[0]
            assert fg[tumour].mean() > 0.99
            assert fg.mean() < 0.95  # the dark surround is background
            assert not fg[:3, :3].any()


@pytest.mark.parametrize("dataset", ["coco_ravirawal", "coco_pkdarabi", "coco_madhav"])
def test_foreground_of_coco_slices_holds_the_tumour(shared_data, dataset):
    from napari_tumorseg.coco.to_masks import rasterize

    split = shared_data / dataset / "train"
    coco = json.loads((split / "_annotations.coco.json").read_text())
    anns: dict[int, list] = {}
    for a in coco["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    images = [im for im in sorted(coco["images"], key=lambda im: im["id"]) if im["id"] in anns][:12]
    fractions = []
    for im in images:
        pixels = read_raster(split / im["file_name"])[0]
        tumour = rasterize(anns[im["id"]], im["height"], im["width"]) > 0
        fg = foreground_mask(pixels[:3].astype(np.float32).mean(axis=0))[0]
        assert fg[tumour].mean() > 0.98, im["file_name"]
        fractions.append(fg.mean())
    assert np.median(fractions) < 0.9  # the dark surround is found on most slices


def test_foreground_is_unchanged_by_an_affine_map_of_noisy_data(shared_data):
    slices = _lgg_slices(shared_data, 1)
    for image, _ in slices:
        flair = image[1].astype(np.float64)
        for scale, shift in ((3.7, -120.0), (0.01, 5.0)):
            assert np.array_equal(foreground_mask(flair), foreground_mask(flair * scale + shift))


def test_constant_and_degenerate_channels():
    assert not foreground_mask(np.full((2, 8, 8), 7.0)).any()
    assert not normalize_input(np.full((1, 2, 8, 8), 7.0), {"normalize": "robust"}).any()
    nan = np.full((1, 4, 4), np.nan)
    assert not foreground_mask(nan).any()
    assert np.isnan(normalize_input(nan[None], {"normalize": "robust"})).all()  # never hidden
    # A ring of tissue (an image cropped inside the head): everything is foreground.
    rng = np.random.default_rng(0)
    tissue = rng.normal(100.0, 10.0, (1, 32, 32))
    assert foreground_mask(tissue).all()
    # Data z-scored over its non-zero voxels: a background of 0 amid the brain's values.
    brain = np.zeros((4, 32, 32))
    brain[:, 8:24, 8:24] = rng.normal(0.0, 1.0, (4, 16, 16))
    assert np.array_equal(foreground_mask(brain), brain != 0)


# ----------------------------------------------------------------------------- the normalisation


@pytest.fixture(scope="module")
def raw_normalised(raw_case):
    return normalize_input(raw_case[0], {"normalize": "robust"})


@pytest.mark.parametrize("over", ["all", "brain"])
def test_raw_and_zscored_copy_normalise_alike(raw_case, raw_normalised, over):
    image, _ = raw_case
    copy = zscored_2013_way(image, over)
    background = copy[:, 0, 0, 0]
    assert np.all(background < -0.3) and np.all(copy[0][image[0] == 0] == background[0])
    a, b = raw_normalised, normalize_input(copy, {"normalize": "robust"})
    # The same foreground (background exactly 0 in both), the scanned brain of each channel.
    assert np.array_equal(a == BACKGROUND, b == BACKGROUND)
    for c in range(4):
        fg = a[c] != BACKGROUND
        assert dice(fg, image[c] != 0) > 0.995
        vals = a[c][fg]
        assert abs(float(vals.mean())) < 1e-3 and abs(float(vals.std()) - 1.0) < 1e-3
        assert float(np.mean(vals >= vals.max() - 1e-5)) > 0.004  # clipped at the 99.5th percentile
    brain = np.any(image != 0, axis=0)
    assert float(np.abs(a - b)[:, brain].max()) < 1e-3
    # The old rule ("z-score over non-zero voxels") counts the copy's background as brain:
    # the model saw another intensity scale.
    old_a, old_b = normalize_intensity(image, "zscore"), normalize_intensity(copy, "zscore")
    assert float(np.abs(old_a - old_b)[:, brain].mean()) > 0.5


def _train_tiny_unet(x: torch.Tensor, y: torch.Tensor, steps: int = 60, seed: int = 0):
    from napari_tumorseg.models import create_model

    torch.manual_seed(seed)
    model = create_model("unet", in_channels=x.shape[1], out_channels=1, width=4, norm="instance")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randperm(x.shape[0], generator=gen)[:8]
        logits = model(x[idx])
        p = logits.sigmoid()
        soft_dice = 1 - (2 * (p * y[idx]).sum() + 1) / (p.sum() + y[idx].sum() + 1)
        loss = F.binary_cross_entropy_with_logits(logits, y[idx]) + soft_dice
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_one_model_gives_the_same_mask_on_a_raw_scan_and_its_zscored_copy(raw_case):
    from napari_tumorseg.inference.predict import Predictor, predict_array

    image, labels = raw_case
    prep = Preprocessing.for_model(2, 64, 4, "binary", normalize="robust",
                                   channel_names=("FLAIR", "T1", "T1c", "T2"),
                                   class_names=("background", "tumour"))
    # Training sees the raw scan only (every channel, the rule the checkpoint records).
    zs = np.flatnonzero((labels > 0).reshape(labels.shape[0], -1).any(axis=1))
    x = torch.from_numpy(apply_preprocessing(image, prep, layout="czyx")[:, zs]).permute(1, 0, 2, 3).contiguous()
    y = torch.from_numpy(preprocess_labels(labels, prep)[zs] > 0).float()[:, None]
    model = _train_tiny_unet(x, y)
    predictor = Predictor(model, "unet", prep.to_dict(), device="cpu")
    mid = zs[len(zs) // 4: 3 * len(zs) // 4: 3].tolist()
    masks = {}
    for name, volume in (("raw", image), ("zscored", zscored_2013_way(image, "brain"))):
        masks[name] = predict_array(predictor, volume, slices=mid, threads=1)[mid] > 0.5
    truth = labels[mid] > 0
    assert dice(masks["raw"], truth) > 0.5  # a model that found the tumour, not an empty mask
    # Measured: 1.0 (Dice with the truth 0.93 on both). The same training under the old rule
    # ("zscore", non-zero voxels) gave 0.40 between the two, the copy's Dice falling to 0.38.
    assert dice(masks["raw"], masks["zscored"]) >= 0.98


# ----------------------------------------------------------------------------- the checkpoint


def test_checkpoint_records_the_rule_and_old_ones_keep_theirs(tmp_path):
    from napari_tumorseg.models import create_model
    from napari_tumorseg.models.checkpoint import load_checkpoint, save_checkpoint

    prep = Preprocessing.for_model(2, 32, 1, "binary", normalize="robust")
    d = prep.to_dict()
    assert d["normalize"] == "robust" and d["clip_percentiles"] == [0.5, 99.5]
    model = create_model("unet", in_channels=1, out_channels=1, width=4)
    save_checkpoint(tmp_path / "m.pt", model, model_name="unet", config={"width": 4}, in_channels=1,
                    out_channels=1, preprocessing=d, class_names=["background", "tumour"], history=[])
    _, ck = load_checkpoint(tmp_path / "m.pt")  # weights_only
    assert Preprocessing.from_dict(ck["preprocessing"]) == prep

    rng = np.random.default_rng(1)
    vol = np.zeros((1, 3, 32, 32), np.float32)
    vol[0, :, 8:24, 8:24] = rng.uniform(100, 200, (3, 16, 16))
    flat = {"dims": 2, "channels": 1, "size": [32, 32], "spatial": "resize"}
    # An old checkpoint: its method and no clip_percentiles key -> exactly the old z-score.
    old = apply_preprocessing(vol, {**flat, "normalize": "zscore"}, layout="czyx")
    brain = vol[0][vol[0] != 0]
    assert np.allclose(old[0], (vol[0] - brain.mean()) / brain.std(), atol=1e-5)
    # No method named at all: "auto", the old rule by data type (float -> zscore, uint8 -> /255).
    assert np.allclose(apply_preprocessing(vol, flat, layout="czyx"), old)
    u8 = vol.astype(np.uint8)
    assert np.allclose(apply_preprocessing(u8, flat, layout="czyx"), u8 / 255.0)
    robust = apply_preprocessing(vol, {**flat, "normalize": "robust"}, layout="czyx")
    assert np.all(robust[0][vol[0] == 0] == 0.0) and abs(float(robust[0][vol[0] != 0].mean())) < 1e-4
    with pytest.raises(Exception, match="clip_percentiles"):
        Preprocessing.for_model(2, 32, 1, normalize="robust", clip_percentiles=(99.0, 1.0))


def test_one_in_plane_labelling_is_background_then_holes_filled_as_scipy_fills_them():
    """Steps 2 and 3 in one labelling equal the two steps as written: the candidates
    connected (3D, faces) to the ring, then scipy's binary_fill_holes on every slice of the
    rest; and a hole closed only through the next slice stays open."""
    from scipy import ndimage as ndi

    from napari_tumorseg.intensity import _outside_per_slice

    def two_steps(cand):
        lab, n = ndi.label(cand)
        ring = np.zeros(cand.shape, bool)
        ring[:, 0, :] = ring[:, -1, :] = ring[:, :, 0] = ring[:, :, -1] = True
        keep = np.zeros(n + 1, bool)
        keep[np.unique(lab[ring & cand])] = True
        keep[0] = False
        fg = ~keep[lab]
        return np.stack([ndi.binary_fill_holes(fg[z]) for z in range(cand.shape[0])])

    rng = np.random.default_rng(3)
    for _ in range(60):
        shape = tuple(int(v) for v in rng.integers(1, 24, 3))
        cand = rng.random(shape) < rng.uniform(0.2, 0.8)
        assert np.array_equal(~_outside_per_slice(cand), two_steps(cand))
    head = np.ones((3, 9, 9), bool)  # candidates: the background around a head
    head[1, 2:7, 2:7] = False
    head[1, 3:6, 3:6] = True  # dark inside the middle slice's head: a hole
    head[0, 2:7, 2:7] = False
    head[0, 4, 4] = True  # its own one-voxel hole, over the other
    fg = ~_outside_per_slice(head)
    assert fg[1, 3:6, 3:6].all() and fg[0, 4, 4] and not fg[2].any()
    open_head = head.copy()
    open_head[1, 4, 2] = True  # a gap in the wall: the middle slice's hole now opens outside
    assert not (~_outside_per_slice(open_head))[1, 4, 4]


def test_window8_keeps_an_exports_window_and_windows_scanner_data_alike(shared_data, raw_case):
    from napari_tumorseg.intensity import new_run_method

    # An 8-bit export (LGG slice, RGB -> channels): exactly x / 255, what its exporter chose.
    import tifffile

    rgb = tifffile.imread(shared_data / "lgg_kaggle3m" / "TCGA_CS_4941_19960909"
                          / "TCGA_CS_4941_19960909_12.tif")
    czyx = np.moveaxis(rgb, -1, 0)[:, None]
    assert czyx.dtype == np.uint8 and new_run_method(czyx.dtype) == "window8"
    out = normalize_input(czyx, {"normalize": "window8"}, czyx.dtype)
    assert out.dtype == np.float32 and np.array_equal(out, czyx.astype(np.float32) / 255.0)
    # RGB averaged to grey is float by then: the stored type still decides.
    grey = czyx.mean(axis=0, keepdims=True)
    assert np.allclose(normalize_input(grey, {"normalize": "window8"}, np.uint8), grey / 255.0)
    # A scanner volume (a model trained on exports, used on a raw scan): background at 0, the
    # foreground's 99.5th percentile at 1, the same for the raw scan and its z-scored copy.
    image, labels = raw_case
    assert new_run_method(image.dtype) == "robust"
    raw = normalize_input(image[:1], {"normalize": "window8"}, image.dtype)
    copy = normalize_input(zscored_2013_way(image[:1], "brain"), {"normalize": "window8"}, np.float32)
    assert raw.min() == 0.0 and raw.max() == 1.0 and np.all(raw[0][image[0] == 0] == 0.0)
    assert np.abs(raw - copy).max() < 1e-4
    lesion, brain = raw[0][labels > 0].mean(), raw[0][(image[0] > 0) & (labels == 0)].mean()
    assert lesion > brain > 0.1  # FLAIR lesion brighter than the brain, both in range
