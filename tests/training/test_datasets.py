"""Data sources, the patient-level split, preprocessing and augmentation on real data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.training import TrainConfig, train
from napari_tumorseg.training.augment import AugmentConfig, augment
from napari_tumorseg.training.datasets import (
    SegDataset,
    arrays_source,
    open_source,
    prepare_case,
    split_refs,
)
from napari_tumorseg.training.events import StartEvent
from napari_tumorseg.training.preprocessing import (
    apply_preprocessing,
    default_preprocessing,
    preprocess_labels,
    restore_spatial,
)


@pytest.mark.parametrize("folder, kind, n_cases", [
    ("coco_ravirawal", "coco", 701), ("coco_madhav", "coco", None), ("lgg_kaggle3m", "pairs", 2),
    ("brats2013_deepmedic", "nifti", 4), ("brats2012_hg0015", "nifti", 1), ("dicom_brainix", "dicom", 1),
])
def test_sources_are_detected(shared_data, folder, kind, n_cases):
    src = open_source(shared_data / folder)
    assert src.kind == kind
    if n_cases:
        assert len({r.case_id for r in src.refs}) == n_cases


def test_lgg_split_keeps_patients_apart(shared_data, tmp_path):
    src = open_source(shared_data / "lgg_kaggle3m")
    train_refs, val_refs, _ = split_refs(src, 0.5, seed=0)
    assert {r.case_id for r in train_refs} | {r.case_id for r in val_refs} == {"TCGA_CS_4941", "TCGA_DU_A5TU"}
    assert not {r.case_id for r in train_refs} & {r.case_id for r in val_refs}
    case = train_refs[0].load()
    assert case.image.shape[:2] == (3, 23) and case.labels.shape == (23, 256, 256)  # one volume
    # The engine's split: every slice of a patient on one side.
    cfg = TrainConfig(model="unet", data=shared_data / "lgg_kaggle3m", out_dir=str(tmp_path), epochs=1,
                      size=32, tiny=True, val_fraction=0.5, batch_size=64)
    start = next(e for e in train(cfg) if isinstance(e, StartEvent))
    assert len(start.train_cases) == 1 and len(start.val_cases) == 1
    assert start.train_cases != start.val_cases
    assert start.n_val == 23  # all slices of the validation patient


def test_roboflow_copies_stay_on_one_side(shared_data):
    src = open_source(shared_data / "coco_madhav/train")
    assert len({r.case_id for r in src.refs}) < len(src.refs)  # .rf. augmented copies
    tr, va, _ = split_refs(src, 0.3, seed=5)
    assert not {r.case_id for r in tr} & {r.case_id for r in va}
    assert split_refs(src, 0.3, seed=5)[1] == va  # fixed seed, same split


def test_coco_training_target_is_the_exported_mask(shared_data, tmp_path):
    """Training on a COCO export learns exactly the masks ``coco2mask`` writes, pixel for pixel."""
    import tifffile

    from napari_tumorseg.coco.to_masks import convert_coco_to_masks

    folder = shared_data / "coco_ravirawal" / "valid"
    report = convert_coco_to_masks(folder, tmp_path / "masks")
    exported = {p.stem: tifffile.imread(p) > 0 for p in report.written}
    prep = default_preprocessing(2, None, 1, "binary", spatial="none")
    src = open_source(folder)
    assert len(src.refs) == len(exported) == 201
    foreground = 0
    for ref in src.refs:
        target = prepare_case(ref, prep).target
        mask = exported[ref.name.rsplit(".", 1)[0]]
        np.testing.assert_array_equal(target[0, 0] > 0.5, mask, err_msg=ref.name)
        foreground += int(mask.sum())
    assert foreground > 0


def test_brats_slices_subsample_empty_ones(shared_data):
    src = open_source(shared_data / "brats2013_deepmedic/validation")
    prep = {**default_preprocessing(2, 64, 2, "binary"), "normalize": "zscore"}
    case = prepare_case(src.refs[0], prep)
    fg = int(case.labels.reshape(case.labels.shape[0], -1).any(1).sum())
    n = case.image.shape[1]
    ds = SegDataset([case], empty_fraction=0.25, seed=0)
    assert fg <= len(ds) < fg + 0.5 * (n - fg)
    assert len(SegDataset([case], empty_fraction=1.0)) == n
    x, y = ds[0]
    assert x.shape == (2, 64, 64) and y.shape == (1, 64, 64)


def test_preprocessing_normalisation_channels_and_sizes(shared_data):
    import tifffile

    img = tifffile.imread(shared_data / "lgg_kaggle3m/TCGA_CS_4941_19960909/TCGA_CS_4941_19960909_12.tif")
    prep = default_preprocessing(2, 64, 3, normalize="scale255")
    out = apply_preprocessing(img, prep)  # (y, x, 3) uint8 -> (3, 1, 64, 64) in [0, 1]
    assert out.shape == (3, 1, 64, 64) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    grey = apply_preprocessing(img, {**prep, "channels": 1})
    assert grey.shape == (1, 1, 64, 64)
    import nibabel as nib

    vol = np.asarray(nib.load(shared_data / "brats2012_hg0015/BRATS_HG0015_T1.nii.gz").dataobj).T
    z = apply_preprocessing(vol, {**default_preprocessing(2, 32, 1), "normalize": "zscore"})
    assert z.shape == (1, vol.shape[0], 32, 32)
    nz = apply_preprocessing(vol, {**default_preprocessing(2, None, 1, spatial="none"), "normalize": "zscore"})
    assert abs(float(nz[0][vol != 0].mean())) < 1e-3 and float(nz[0][vol != 0].std()) == pytest.approx(1, abs=1e-3)
    with pytest.raises(TumorSegError, match="channels"):
        apply_preprocessing(np.zeros((2, 4, 8, 8)), default_preprocessing(2, 8, 3))
    # pad/crop round trip and nearest-neighbour masks
    mask = np.zeros((1, 50, 70), np.int64)
    mask[0, 10:20, 30:40] = 1
    pc = {**default_preprocessing(2, 64, 1, spatial="pad_crop")}
    m = preprocess_labels(mask, pc)
    assert m.shape == (1, 64, 64) and m.sum() == 100
    back = restore_spatial(m[None], (50, 70), pc)[0]
    assert np.array_equal(back, mask)
    rs = default_preprocessing(2, 32, 1)
    assert set(np.unique(preprocess_labels(mask, rs))) <= {0, 1}


def test_augmentation_moves_image_and_mask_together(shared_data):
    import tifffile

    img = tifffile.imread(shared_data / "lgg_kaggle3m/TCGA_CS_4941_19960909/TCGA_CS_4941_19960909_12.tif")
    mask = tifffile.imread(shared_data / "lgg_kaggle3m/TCGA_CS_4941_19960909/TCGA_CS_4941_19960909_12_mask.tif") > 0
    # Tag the tumour in the image so the correspondence can be checked after the transform.
    x = torch.from_numpy(np.where(mask, 1000.0, img[..., 1].astype(np.float32)))[None]
    y = torch.from_numpy(mask.astype(np.float32))[None]
    geo = AugmentConfig(blur=False, contrast=False, intensity=False, strength=2.0)
    changed = 0
    for seed in range(8):
        g = torch.Generator().manual_seed(seed)
        xa, ya = augment(x, y, g, geo)
        tagged = xa[0] > 999.0
        agree = (tagged == (ya[0] > 0.5)).float().mean()
        assert agree > 0.995
        changed += int(not torch.equal(ya, y))
        xb, yb = augment(x, y, torch.Generator().manual_seed(seed), geo)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)  # seeded: reproducible
    assert changed >= 4
    off = augment(x, y, torch.Generator().manual_seed(0), AugmentConfig.from_value(False))
    assert off[0] is x and off[1] is y
    inten = AugmentConfig(flips=False, rotate=False, strength=2.0)
    xi, yi = augment(x, y, torch.Generator().manual_seed(1), inten)
    assert torch.equal(yi, y)


def test_in_memory_layers_and_size_mismatch():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(3, 40, 40)).astype(np.float32)
    lab = np.zeros((3, 40, 40), np.uint8)
    src = arrays_source([(img, lab, (2.0, 1.0, 1.0), "patient A"), {"image": img, "mask": lab, "case_id": "B"}])
    assert [r.case_id for r in src.refs] == ["patient A", "B"]
    assert src.refs[0].load().spacing == (2.0, 1.0, 1.0)
    bad = arrays_source([(img, lab[:, :30], None, "C")])
    with pytest.raises(TumorSegError, match="differ in size"):
        bad.refs[0].load()


def test_added_pairs_are_whole_cases_of_their_scan(shared_data, tmp_path):
    """The names "add to training set" writes are read back as one case per pair (never as
    slices of one volume), under the scan's case id, beside LGG slice pairs."""
    from napari_tumorseg.export.tiff import write_tiff_stack
    from napari_tumorseg.training.datasets import next_pair_paths

    vol = np.arange(3 * 8 * 8, dtype=np.uint16).reshape(3, 8, 8)
    written = []
    for k in range(2):  # as the Correct dock writes them
        img, mask = next_pair_paths(tmp_path, "AX FLAIR/1")
        write_tiff_stack(vol + k, img, spacing=(5.0, 1.0, 1.0))
        write_tiff_stack((vol % 7 == k).astype(np.uint8), mask, spacing=(5.0, 1.0, 1.0))
        written.append(img.name)
    assert written == ["AX_FLAIR_1_case001.tif", "AX_FLAIR_1_case002.tif"]
    src = open_source(tmp_path)
    assert src.kind == "pairs" and sorted(r.name for r in src.refs) == ["AX_FLAIR_1_case001", "AX_FLAIR_1_case002"]
    assert {r.case_id for r in src.refs} == {"AX_FLAIR_1"}
    for ref, k in zip(sorted(src.refs, key=lambda r: r.name), range(2)):
        data = ref.load()
        assert data.image.shape == (1, 3, 8, 8)  # one case of 3 slices, not 6 slices of one
        np.testing.assert_array_equal(data.image[0], vol + k)
    # LGG slice pairs still join into one volume per patient.
    lgg = open_source(shared_data / "lgg_kaggle3m")
    assert all(r.load().image.shape[1] > 1 for r in lgg.refs[:1])


def test_open_layers_say_their_convention_by_their_label_names():
    """The Train dock's "open layers" source hands the labels layer's names on: a region map
    (the Predict dock's, corrected) is read as one, not by its values as BraTS 2023's."""
    from napari_tumorseg.brats import REGION_LABEL_NAMES
    from napari_tumorseg.training.datasets import arrays_source

    image = np.zeros((2, 8, 8), np.float32)
    mask = np.zeros((2, 8, 8), np.uint8)
    mask[1, 2:6, 2:6] = 1
    mask[1, 3:5, 3:5] = 3
    named = arrays_source([{"image": image, "mask": mask, "label_names": REGION_LABEL_NAMES}])
    assert named.refs[0].label_convention == "regionmap"
    assert arrays_source([{"image": image, "mask": mask}]).refs[0].label_convention is None


def test_a_region_map_exported_as_tiff_trains_as_regions(shared_data, tmp_path):
    """A corrected region map exported as TIFF (1 oedema, 2 core, 3 enhancing, its label names
    in the file) and paired with its scan is read by its names in a regions run: core and
    enhancing are learned from it, not left unknown, and not read as BraTS 2023's 1 = core.
    The same mask without names stays one object (the whole tumour only)."""
    import nibabel as nib

    from napari_tumorseg.brats import REGION_LABEL_NAMES, labels_to_regions, regions_to_labels
    from napari_tumorseg.export.tiff import write_tiff_stack

    case = shared_data / "brats2013_deepmedic/train/brats_2013_pat0005_1"
    flair = np.asarray(nib.load(case / "Flair_subtrMeanDivStd.nii.gz").dataobj).T.astype(np.float32)
    truth = np.asarray(nib.load(case / "OTMultiClass.nii.gz").dataobj).T.astype(np.uint8)
    z = int(np.argmax((truth == 4).sum(axis=(1, 2))))
    regions = labels_to_regions(truth[z - 2:z + 2], "brats")
    regionmap = regions_to_labels(regions)
    assert set(np.unique(regionmap)) == {0, 1, 2, 3}
    # the scan's own grid; the run's convention is another source's (BraTS 2017-2021)
    prep = {**default_preprocessing(2, None, 1, target="regions", spatial="none"), "region_convention": "brats"}
    targets = {}
    for named in (True, False):
        folder = tmp_path / ("named" if named else "plain")
        (folder / "images").mkdir(parents=True)
        (folder / "masks").mkdir()
        write_tiff_stack(flair[z - 2:z + 2], folder / "images" / "pat5.tif")
        write_tiff_stack(regionmap, folder / "masks" / "pat5.tif", kind="labels",
                         label_names=REGION_LABEL_NAMES if named else None)
        (ref,) = open_source(folder).refs
        targets[named] = prepare_case(ref, prep, per_case_convention=True).target
    named, plain = targets[True], targets[False]
    assert named.shape[0] == 3 and not np.isnan(named).any()
    np.testing.assert_array_equal(named, regions.astype(np.float32))  # WT, TC, ET as the truth says
    assert np.isnan(plain[1:]).all() and not np.isnan(plain[0]).any()
    np.testing.assert_array_equal(plain[0], named[0])
