"""Prediction core on real MRI: a tiny U-Net trained here on BRAINIX, a tiny GLIMS on BraTS."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
import torch.nn.functional as F

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.export import export_labels, export_probabilities, format_from_path, probability_path
from napari_tumorseg.inference import (
    Predictor,
    aggregate_case,
    classify_case,
    classify_slices,
    predict_array,
    predict_volume,
    probabilities_to_labels,
)
from napari_tumorseg.inference.sliding_window import count_windows, sliding_window_predict
from napari_tumorseg.io.readers import read_path
from napari_tumorseg.models import create_model, get_info
from napari_tumorseg.models.checkpoint import save_checkpoint
from napari_tumorseg.training.preprocessing import (
    apply_preprocessing,
    default_preprocessing,
    preprocess_labels,
    restore_spatial,
)

BRATS = "brats2013_deepmedic/validation/brats_2013_pat0003_1"
SIZE = 64



@pytest.fixture(scope="module")
def brainix(shared_data):
    flair = read_path(shared_data / "dicom_brainix" / "FLAIR")[0]
    roi = read_path(shared_data / "dicom_brainix" / "ROI")[0]
    assert flair.spatial_shape == roi.spatial_shape == (22, 288, 288)
    return flair, roi


def train_tiny_unet(image: np.ndarray, mask: np.ndarray, steps: int = 100, seed: int = 0):
    """A width-4 U-Net overfitted on one real case at 64x64; returns (model, preprocessing)."""
    prep = default_preprocessing(2, [SIZE, SIZE], 1, "binary")
    prep.update(normalize="zscore", class_names=["background", "tumour"])
    x = torch.from_numpy(apply_preprocessing(image, prep)).permute(1, 0, 2, 3).contiguous()
    y = torch.from_numpy(preprocess_labels(mask, prep) > 0).float()[:, None]
    torch.manual_seed(seed)
    model = create_model("unet", in_channels=1, out_channels=1, width=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randperm(x.shape[0], generator=gen)[:8]
        logits = model(x[idx])
        p = logits.sigmoid()
        dice = 1 - (2 * (p * y[idx]).sum() + 1) / (p.sum() + y[idx].sum() + 1)
        loss = F.binary_cross_entropy_with_logits(logits, y[idx]) + dice
        opt.zero_grad()
        loss.backward()
        opt.step()
    # A hundred steps at lr 1e-2 leave BatchNorm's running statistics behind the weights:
    # re-estimate them with the final weights (cumulative average over every slice).
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None
        model(x)
    return model.eval(), prep


@pytest.fixture(scope="module")
def unet_ckpt(brainix, tmp_path_factory):
    flair, roi = brainix
    model, prep = train_tiny_unet(flair.data, roi.data)
    path = tmp_path_factory.mktemp("ckpt") / "unet_brainix.pt"
    save_checkpoint(path, model, model_name="unet", config={"width": 4}, in_channels=1, out_channels=1,
                    preprocessing=prep, class_names=["background", "tumour"], history=[])
    return path


@pytest.fixture(scope="module")
def predictor(unet_ckpt):
    return Predictor.from_checkpoint(unet_ckpt, device="cpu")


@pytest.fixture(scope="module")
def brainix_events(predictor, brainix):
    return list(predict_volume(predictor, brainix[0], batch_size=8))


def _dice(a, b) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


# ----------------------------------------------------------------------------- 2D


def test_predictor_knows_the_checkpoint(predictor):
    assert predictor.model_name == "unet" and predictor.dims == 2
    assert predictor.output_kind == "binary" and predictor.channel_names is None
    assert predictor.device.type == "cpu" and not predictor.amp and not predictor.model.training
    assert predictor.prep["size"] == [SIZE, SIZE] and predictor.label_names() == {1: "tumour"}


def test_slices_arrive_batch_by_batch_on_the_source_grid(brainix_events, brainix):
    flair, roi = brainix
    kinds = [e.kind for e in brainix_events]
    assert kinds == ["start", "progress", "progress", "progress", "done"]  # 22 slices, batches of 8
    progress = [e for e in brainix_events if e.kind == "progress"]
    assert [e.slices for e in progress] == [list(range(0, 8)), list(range(8, 16)), list(range(16, 22))]
    assert [e.done for e in progress] == [8, 16, 22] and all(e.total == 22 for e in progress)
    final = brainix_events[-1]
    prob = final.probabilities
    assert prob.shape == flair.spatial_shape and prob.dtype == np.float32
    assert 0.0 <= prob.min() and prob.max() <= 1.0
    for e in progress:  # the planes shown early are exactly the final ones
        assert e.planes.shape == (len(e.slices), 288, 288)
        np.testing.assert_array_equal(prob[..., e.slices, :, :], e.planes)
    # The model learned the tumour: probabilities are higher inside the ROI, labels overlap it.
    inside, outside = prob[roi.data > 0].mean(), prob[roi.data == 0].mean()
    assert inside > 0.5 > outside
    assert _dice(probabilities_to_labels(prob, 0.5), roi.data) > 0.3


def test_batched_equals_one_slice_per_forward_and_a_plain_loop(predictor, brainix, brainix_events):
    flair = brainix[0]
    batched = brainix_events[-1].probabilities
    single = predict_array(predictor, flair, batch_size=1)
    np.testing.assert_allclose(single, batched, atol=1e-5)
    # The plain loop of the preprocessing module's own functions, slice 11.
    x = apply_preprocessing(flair.data, predictor.prep)[:, 11:12]
    with torch.no_grad():
        p = predictor.model(torch.from_numpy(x).permute(1, 0, 2, 3)).sigmoid()[:, 0].numpy()
    plain = restore_spatial(p[None], (288, 288), predictor.prep)[0, 0]
    np.testing.assert_allclose(batched[11], np.clip(plain, 0, 1), atol=1e-5)


def test_slice_subset_uses_whole_volume_statistics(predictor, brainix, brainix_events):
    full = brainix_events[-1].probabilities
    events = list(predict_volume(predictor, brainix[0], slices=[14, 3]))
    final = events[-1]
    assert final.kind == "done" and final.slices == [3, 14] and final.total == 2
    np.testing.assert_allclose(final.probabilities[[3, 14]], full[[3, 14]], atol=1e-5)
    others = np.setdiff1d(np.arange(22), [3, 14])
    assert not final.probabilities[others].any()
    with pytest.raises(TumorSegError, match="outside the volume"):
        list(predict_volume(predictor, brainix[0], slices=[22]))


def test_the_normalised_volume_is_kept_for_the_next_call_on_the_same_scan(unet_ckpt, brainix):
    """Predicting one slice normalises the whole volume (training's statistics); the next
    call on the same scan (a new array with the same content, as the dock builds it) reuses
    that, a different scan does not, and the answers equal a fresh predictor's."""
    predictor = Predictor.from_checkpoint(unet_ckpt, device="cpu")
    vol = np.asarray(brainix[0].data)
    first = list(predict_volume(predictor, vol.copy(), slices=[10]))[-1].probabilities[10]
    kept = predictor._norm_cache[1]
    second = list(predict_volume(predictor, vol.copy(), slices=[11]))[-1].probabilities[11]
    assert predictor._norm_cache[1] is kept
    fresh = Predictor.from_checkpoint(unet_ckpt, device="cpu")
    np.testing.assert_allclose(first, list(predict_volume(fresh, vol, slices=[10]))[-1].probabilities[10], atol=1e-6)
    np.testing.assert_allclose(second, list(predict_volume(fresh, vol, slices=[11]))[-1].probabilities[11], atol=1e-6)
    other = np.ascontiguousarray(vol[::-1])  # another scan (its slices in the other order): normalised anew
    list(predict_volume(predictor, other, slices=[10]))
    assert predictor._norm_cache[1] is not kept


def test_cancel_stops_at_the_next_batch(predictor, brainix):
    seen: list[str] = []
    events = []
    for ev in predict_volume(predictor, brainix[0], batch_size=4, cancel=lambda: "progress" in seen):
        seen.append(ev.kind)
        events.append(ev)
    assert [e.kind for e in events] == ["start", "progress", "cancelled"]
    assert events[-1].done == 4 and events[-1].slices == [0, 1, 2, 3]
    assert events[-1].probabilities[:4].any() and not events[-1].probabilities[4:].any()
    with pytest.raises(TumorSegError, match="cancelled"):
        predict_array(predictor, brainix[0], cancel=lambda: True)


def test_threshold_changes_labels_without_the_model(brainix_events):
    prob = brainix_events[-1].probabilities
    low, high = probabilities_to_labels(prob, 0.2), probabilities_to_labels(prob, 0.8)
    assert low.dtype == np.uint8 and set(np.unique(low)) <= {0, 1}
    np.testing.assert_array_equal(low, (prob > 0.2).astype(np.uint8))
    assert np.count_nonzero(high) < np.count_nonzero(low)
    assert not np.any(high & ~low.astype(bool))  # nested
    with pytest.raises(TumorSegError):
        probabilities_to_labels(prob, 1.5)


def test_region_and_multiclass_label_conversion(brainix, shared_data):
    # Real BraTS regions as "probabilities": the labels come back as nested named values.
    truth = read_path(shared_data / BRATS / "OTMultiClass.nii.gz")[0].data
    from napari_tumorseg.brats import labels_to_regions

    regions = labels_to_regions(truth).astype(np.float32)
    lab = probabilities_to_labels(regions, 0.5, "regions")
    assert set(np.unique(lab)) <= {0, 1, 2, 3}
    np.testing.assert_array_equal(lab > 0, truth > 0)  # WT
    np.testing.assert_array_equal(lab == 3, truth == 4)  # ET
    soft = np.stack([1 - regions[0], regions[0] - regions[1], regions[1]])
    np.testing.assert_array_equal(probabilities_to_labels(soft, 0.5, "multiclass"), np.argmax(soft, 0))


def test_nifti_in_nifti_out_same_affine(predictor, shared_data, tmp_path):
    path = shared_data / BRATS / "Flair_subtrMeanDivStd.nii.gz"
    vol = read_path(path)[0]
    events = list(predict_volume(predictor, vol, batch_size=32))
    assert vol.spatial_shape == (155, 240, 240)
    assert [e.kind for e in events].count("progress") == math.ceil(155 / 32)
    prob = events[-1].probabilities
    labels = probabilities_to_labels(prob, 0.5)
    out = export_labels(labels, "nifti", tmp_path / "pred.nii.gz", vol)[0]
    src, got = nib.load(path), nib.load(out)
    np.testing.assert_allclose(got.affine, src.affine, atol=1e-5)
    assert got.shape == src.shape
    back = read_path(out)[0]
    np.testing.assert_array_equal(back.data, labels)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5)
    p_out = export_probabilities(prob, probability_path(out), vol)
    assert p_out.name == "pred_prob.nii.gz"
    np.testing.assert_allclose(read_path(p_out)[0].data, prob, atol=1e-6)
    np.testing.assert_allclose(nib.load(p_out).affine, src.affine, atol=1e-5)
    with pytest.raises(TumorSegError, match="exists"):
        export_labels(labels, "nifti", out, vol)


def test_empty_slices_skip_the_model(predictor, shared_data):
    vol = read_path(shared_data / BRATS / "Flair_subtrMeanDivStd.nii.gz")[0]
    zs = list(range(0, 155, 5))
    empty = [z for z in zs if vol.data[z].min() == vol.data[z].max()]
    assert empty, "BraTS has background-only slices at the top and bottom"
    sizes: list[int] = []
    hook = predictor.model.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
    try:
        skipped = predict_array(predictor, vol, slices=zs, batch_size=64)
        assert sum(sizes) == len(zs) - len(empty)
        full = predict_array(predictor, vol, slices=zs, batch_size=64, skip_empty=False)
    finally:
        hook.remove()
    assert not skipped[empty].any()
    kept = [z for z in zs if z not in empty]
    np.testing.assert_allclose(skipped[kept], full[kept], atol=1e-5)


def test_2d_jpg_input(predictor, shared_data):
    jpg = sorted((shared_data / "coco_ravirawal" / "valid").glob("*.jpg"))[0]
    vol = read_path(jpg)[0]
    events = list(predict_volume(predictor, vol))
    assert [e.kind for e in events] == ["start", "progress", "done"]
    prob = events[-1].probabilities
    assert prob.shape == vol.spatial_shape == (1, 640, 640)
    assert 0.0 <= prob.min() and prob.max() <= 1.0 and prob.std() > 0


def test_from_registry_with_bare_weights_matches_checkpoint(predictor, brainix, brainix_events, tmp_path):
    weights = tmp_path / "weights.pt"
    torch.save(predictor.model.state_dict(), weights)
    other = Predictor.from_registry("unet", weights, device="cpu", preprocessing=predictor.prep, width=4)
    np.testing.assert_allclose(predict_array(other, brainix[0], slices=[10]),
                               brainix_events[-1].probabilities * (np.arange(22) == 10)[:, None, None],
                               atol=1e-5)
    with pytest.raises(TumorSegError, match="not found"):
        Predictor.from_checkpoint(tmp_path / "missing.pt")


# ----------------------------------------------------------------------------- DICOM-SEG


def test_brainix_prediction_to_dicom_seg_on_the_roi_grid(predictor, brainix, brainix_events, tmp_path):
    pytest.importorskip("napari_tumorseg.export.dicom_seg")
    from napari_tumorseg.export.dicom_seg import read_dicom_seg

    flair, roi = brainix
    labels = probabilities_to_labels(brainix_events[-1].probabilities, 0.5)
    assert labels.shape == flair.spatial_shape and labels.any()
    out = export_labels(labels, "dicom-seg", tmp_path / "pred_seg.dcm", flair,
                        names=predictor.label_names(), algorithm="unet")[0]
    seg = pydicom.dcmread(out)
    src = pydicom.dcmread(flair.source[0], stop_before_pixels=True)
    assert seg.Modality == "SEG"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    assert seg.FrameOfReferenceUID == src.FrameOfReferenceUID
    assert seg.StudyInstanceUID == src.StudyInstanceUID
    assert seg.SegmentSequence[0].SegmentLabel == "tumour"

    # Every stored frame sits on a slice of the ROI series (the reference mask grid) and holds
    # the labels of that slice.
    roi_files = sorted(roi.source)
    roi_ds = [pydicom.dcmread(f, stop_before_pixels=True) for f in roi_files]
    roi_pos = [np.array(d.ImagePositionPatient, float) for d in roi_ds]
    # ROI slices ordered along the slice normal: the readers' order, i.e. the labels' z.
    normal = np.cross(*np.array(roi_ds[0].ImageOrientationPatient, float).reshape(2, 3))
    order = np.argsort([p @ normal for p in roi_pos])
    roi_index = {tuple(np.round(roi_pos[i], 2)): z for z, i in enumerate(order)}
    np.testing.assert_array_equal(labels.shape, roi.spatial_shape)
    spacing = np.array(roi_ds[0].PixelSpacing, float)
    shared = seg.SharedFunctionalGroupsSequence[0]
    np.testing.assert_allclose(np.array(shared.PixelMeasuresSequence[0].PixelSpacing, float), spacing, atol=1e-4)
    np.testing.assert_allclose(np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float),
                               np.array(roi_ds[0].ImageOrientationPatient, float), atol=1e-4)
    # Frames are in the files' pixel order; the labels are in the display order the readers
    # reorient to, so compare against the labels taken back to the source's voxel order.
    from napari_tumorseg.io.orientation import to_source_order

    file_labels, _ = to_source_order(labels, flair)
    frames = seg.pixel_array.reshape(-1, 288, 288)
    assert len(frames) == 22  # one frame per source slice, empty ones too (reopens on the series' grid)
    for frame, group in zip(frames, seg.PerFrameFunctionalGroupsSequence):
        pos = np.array(group.PlanePositionSequence[0].ImagePositionPatient, float)
        z = roi_index[tuple(np.round(pos, 2))]
        np.testing.assert_array_equal(frame > 0, file_labels[z] > 0)
    np.testing.assert_array_equal(read_dicom_seg(out, source=flair), labels)
    with pytest.raises(TumorSegError, match="exists"):
        export_labels(labels, "dicom-seg", out, flair)


def test_export_dispatch_formats_and_refusals(brainix, shared_data, tmp_path):
    import tifffile

    flair, roi = brainix
    labels = roi.data.astype(np.uint8)
    assert format_from_path(tmp_path / "a.nii.gz") == "nifti" and format_from_path(tmp_path / "a.tif") == "tiff"
    assert format_from_path(tmp_path / "a.dcm") == "dicom-seg" and format_from_path(tmp_path / "a.json") == "coco"
    stack = export_labels(labels, "tiff", tmp_path / "m.tif", flair)[0]
    np.testing.assert_array_equal(tifffile.imread(stack), labels)
    files = export_labels(labels, "tiff-slices", tmp_path / "slices", flair)
    assert len(files) == 22 and files[0].name == "sT2W_FLAIR_labels_001.tif"
    np.testing.assert_array_equal(np.stack([tifffile.imread(f) for f in files]), labels)
    coco = export_labels(labels, "coco", tmp_path / "c.json", flair, names={1: "tumour"}, image=flair.data)
    from napari_tumorseg.coco.dataset import load_coco

    ds = load_coco(coco[0])
    assert [c["name"] for c in ds.categories.values()] == ["tumour"]
    assert sorted(im["slice_index"] for im in ds.images.values()) == [
        z for z in range(22) if labels[z].any()]
    try:
        from napari_tumorseg.export.coco_labels import read_coco_labels
    except ModuleNotFoundError:
        read_coco_labels = None
    if read_coco_labels is not None:
        np.testing.assert_array_equal(read_coco_labels(coco[0]), labels)
        assert all(p.exists() for p in coco[1:]) and len(coco) > 1
    nifti_src = read_path(shared_data / BRATS / "Flair_subtrMeanDivStd.nii.gz")[0]
    with pytest.raises(TumorSegError, match="DICOM-SEG needs a DICOM source"):
        export_labels(np.zeros(nifti_src.spatial_shape, np.uint8), "dicom-seg", tmp_path / "x.dcm", nifti_src)
    with pytest.raises(TumorSegError, match="not on the grid"):
        export_labels(labels[:5], "nifti", tmp_path / "bad.nii.gz", flair)
    with pytest.raises(TumorSegError, match="exists"):
        export_labels(labels, "tiff", stack, flair)
    export_labels(labels * 0 + 1, "tiff", stack, flair, overwrite=True)
    assert tifffile.imread(stack).min() == 1


# ----------------------------------------------------------------------------- 3D GLIMS


@pytest.fixture(scope="module")
def glims_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    cfg = get_info("glims").tiny_config  # width 4, 32^3 windows
    assert list(cfg["img_size"]) == [32, 32, 32]
    model = create_model("glims", in_channels=2, out_channels=3, **cfg)
    prep = default_preprocessing(3, None, 2, target="regions")
    prep.update(normalize="zscore", patch_size=[32, 32, 32], region_convention="brats",
                class_names=["WT", "TC", "ET"])
    path = tmp_path_factory.mktemp("glims") / "glims.pt"
    save_checkpoint(path, model, model_name="glims", config=cfg, in_channels=2, out_channels=3,
                    preprocessing=prep, class_names=["WT", "TC", "ET"], history=[])
    return path


@pytest.fixture(scope="module")
def brats_crop(shared_data):
    case = shared_data / BRATS
    flair = read_path(case / "Flair_subtrMeanDivStd.nii.gz")[0].data
    t1c = read_path(case / "T1c_subtrMeanDivStd.nii.gz")[0].data
    truth = read_path(case / "OTMultiClass.nii.gz")[0].data
    z, y, x = np.argwhere(truth > 0).mean(0).astype(int)
    return np.stack([flair, t1c])[:, z - 15:z + 16, y - 18:y + 19, x - 16:x + 16]


def test_glims_through_the_sliding_window(glims_ckpt, brats_crop):
    pred = Predictor.from_checkpoint(glims_ckpt, device="cpu")
    assert pred.dims == 3 and pred.roi_size() == (32, 32, 32) and pred.channel_names == ["WT", "TC", "ET"]
    events = list(predict_volume(pred, brats_crop, overlap=0.5))
    total = count_windows(brats_crop.shape[1:], 32, 0.5)
    assert [e.kind for e in events] == ["start"] + ["progress"] * total + ["done"]
    assert all(e.unit == "windows" for e in events) and events[-2].done == total
    prob = events[-1].probabilities
    assert prob.shape == (3, *brats_crop.shape[1:]) and prob.dtype == np.float32
    direct = sliding_window_predict(pred.model, apply_preprocessing(brats_crop, pred.prep, "czyx"), 32, overlap=0.5)
    np.testing.assert_allclose(prob, direct.numpy(), atol=1e-5)
    labels = probabilities_to_labels(prob, 0.5, "regions")
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
    # Cancel is polled before the first window and after each one: stop after the first.
    polls = []

    def cancel() -> bool:
        polls.append(1)
        return len(polls) >= 2

    evs = list(predict_volume(pred, brats_crop, overlap=0.5, cancel=cancel))
    assert [e.kind for e in evs] == ["start", "progress", "cancelled"] and evs[-1].done == 1
    assert not evs[-1].probabilities.any()


# ----------------------------------------------------------------------------- classifier


def test_classifier_per_slice_and_case(brainix, tmp_path):
    torch.manual_seed(0)
    model = create_model("convnextv2", in_channels=3, out_channels=4, variant="atto")
    prep = default_preprocessing(2, [64, 64], 3, target="classes")
    prep.update(normalize="zscore", channel_mode="repeat",
                class_names=["glioma", "meningioma", "no tumour", "pituitary"])
    path = tmp_path / "cls.pt"
    save_checkpoint(path, model, model_name="convnextv2", config={"variant": "atto"}, in_channels=3,
                    out_channels=4, preprocessing=prep, class_names=prep["class_names"], history=[])
    pred = Predictor.from_checkpoint(path, device="cpu")
    assert pred.is_classifier
    with pytest.raises(TumorSegError, match="classifier"):
        list(predict_volume(pred, brainix[0]))
    probs = classify_slices(pred, brainix[0], slices=[5, 10, 12])
    assert probs.shape == (3, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    x = apply_preprocessing(brainix[0].data, pred.prep)[:, [10]]
    with torch.no_grad():
        direct = pred.model(torch.from_numpy(x).permute(1, 0, 2, 3)).softmax(1).numpy()
    np.testing.assert_allclose(probs[1], direct[0], atol=1e-5)
    case = classify_case(pred, brainix[0], slices=[5, 10, 12])
    assert case.label in pred.class_names and abs(case.probabilities.sum() - 1) < 1e-5


def test_case_aggregate_policy():
    names = ["glioma", "meningioma", "no tumour", "pituitary"]
    p = np.array([[0.1, 0.1, 0.7, 0.1],   # tumour-free slice
                  [0.6, 0.2, 0.1, 0.1],   # glioma
                  [0.5, 0.3, 0.1, 0.1],   # glioma
                  [0.0, 0.0, 1.0, 0.0]])  # tumour-free slice
    case = aggregate_case(p, names, [10, 11, 12, 13])
    assert case.label == "glioma" and case.slices_used == [11, 12]
    np.testing.assert_allclose(case.probabilities, [0.55, 0.25, 0.1, 0.1], atol=1e-6)
    none = aggregate_case(p[[0, 3]], names)
    assert none.label == "no tumour" and none.slices_used == [0, 1] and "all slices" in none.policy


def test_prediction_reuse_rule():
    from napari_tumorseg.inference.predict import prediction_reuse

    scan, other, model, model2 = object(), object(), object(), object()
    assert prediction_reuse(None, (), None, scan, (5, 8, 8), model) == "new"
    assert prediction_reuse(scan, (5, 8, 8), model, scan, (5, 8, 8), model) == "extend"
    assert prediction_reuse(scan, (5, 8, 8), model, scan, (5, 8, 8), model2) == "replace"
    assert prediction_reuse(scan, (3, 5, 8, 8), model, scan, (5, 8, 8), model) == "replace"
    assert prediction_reuse(scan, (5, 8, 8), model, other, (5, 8, 8), model) == "new"
