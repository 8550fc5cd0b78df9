"""Exports come back as they left: each reopens through the readers as labels on the source grid."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import nibabel.orientations as nio
import numpy as np
import pytest

from napari_tumorseg._reader import napari_get_reader
from napari_tumorseg.export import export_labels
from napari_tumorseg.io.grid import check_same_grid
from napari_tumorseg.io.readers import read_path


@pytest.fixture(scope="module")
def brainix(shared_data, tmp_path_factory):
    """BRAINIX FLAIR (copied, so a SEG written beside it finds it) and its ROI as shown."""
    root = tmp_path_factory.mktemp("brainix")
    shutil.copytree(shared_data / "dicom_brainix" / "FLAIR", root / "FLAIR")
    (flair,) = read_path(root / "FLAIR")
    (roi,) = read_path(shared_data / "dicom_brainix" / "ROI")
    assert roi.kind == "labels" and roi.data.any()
    return root, flair, roi.data


@pytest.fixture(scope="module")
def flair_ras(shared_data, tmp_path_factory):
    """BraTS 2012 FLAIR stored RAS (not the display order) and its truth as shown."""
    src = nib.load(shared_data / "brats2012_hg0015" / "BRATS_HG0015_FLAIR.nii.gz")
    t = nio.ornt_transform(nio.io_orientation(src.affine), nio.axcodes2ornt(("R", "A", "S")))
    path = tmp_path_factory.mktemp("ras") / "flair_ras.nii.gz"
    nib.save(src.as_reoriented(t), path)
    (flair,) = read_path(path)
    (truth,) = read_path(shared_data / "brats2012_hg0015" / "BRATS_HG0015_truth.nii.gz")
    assert check_same_grid(flair, truth) == ""
    return path, flair, truth.data


def _series_uid(volume) -> str:
    ref = volume.metadata["dicom"]  # a DicomReference (or, before it, a plain dict)
    return ref.series_uid if hasattr(ref, "series_uid") else ref["series_uid"]


def _one(path):
    vols = read_path(path)
    assert len(vols) == 1, [v.name for v in vols]
    return vols[0]


def test_nifti_mask_goes_back_to_the_source_order_and_reopens_as_labels(flair_ras, tmp_path):
    path, flair, truth = flair_ras
    (out,) = export_labels(truth, None, tmp_path / "result.nii.gz", source=flair)
    written = nib.load(out)
    # The file's own voxel order and affine: it overlays flair_ras voxel for voxel anywhere.
    assert nib.aff2axcodes(written.affine) == ("R", "A", "S")
    np.testing.assert_allclose(written.affine, nib.load(path).affine, atol=1e-5)
    back = _one(out)
    assert back.kind == "labels"  # not an opaque grey image, although named "result"
    np.testing.assert_array_equal(back.data, truth)
    assert check_same_grid(back, flair) == ""


def test_nifti_mask_without_name_or_intent_is_labels_from_content(flair_ras, tmp_path):
    _, flair, truth = flair_ras
    img = nib.Nifti1Image(truth.T.astype(np.int16), np.eye(4))  # no intent, a neutral name
    nib.save(img, tmp_path / "output.nii.gz")
    assert _one(tmp_path / "output.nii.gz").kind == "labels"
    assert flair.kind == "image"  # an int16 scan with thousands of values stays an image


@pytest.mark.parametrize("fmt, name", [("tiff", "mask.tif"), ("tiff-slices", "slices")])
def test_tiff_reopens_on_the_source_grid(brainix, tmp_path, fmt, name):
    _, flair, roi = brainix
    export_labels(roi, fmt, tmp_path / name, source=flair)
    back = _one(tmp_path / name)
    assert back.kind == "labels"
    np.testing.assert_array_equal(back.data, roi)
    np.testing.assert_allclose(back.affine, flair.affine, atol=1e-6)  # origin and tilt, not just spacing
    assert check_same_grid(back, flair) == ""


@pytest.mark.parametrize("fmt, name", [("tiff", "regions.tif"), ("tiff-slices", "regions")])
def test_tiff_region_map_reopens_with_what_its_values_mean(flair_ras, tmp_path, fmt, name):
    """A region map (1 whole tumour, 2 core, 3 enhancing) saved as TIFF reopens as one: read
    by its values alone, 1-3 would be BraTS 2023's core / oedema / enhancing (the bug a
    reopened NIfTI prediction had)."""
    from napari_tumorseg.brats import REGION_COLORS, REGION_LABEL_NAMES, convention_from_label_names
    from napari_tumorseg.interactive.targets import target_truth

    _, flair, truth = flair_ras  # 2012 truth: 1 oedema, 2 active tumour
    regions = np.where(truth == 2, 2, np.where(truth > 0, 1, 0)).astype(np.uint8)
    regions[tuple(s // 2 for s in regions.shape)] = 3  # one enhancing voxel keeps all three
    export_labels(regions, fmt, tmp_path / name, source=flair, names=REGION_LABEL_NAMES, colors=REGION_COLORS)
    back = _one(tmp_path / name)
    assert back.kind == "labels" and np.array_equal(back.data, regions)
    assert back.metadata["label_names"] == REGION_LABEL_NAMES
    assert convention_from_label_names(back.metadata["label_names"]) == "regionmap"
    assert back.metadata["label_colors"][3] == pytest.approx(REGION_COLORS[3][:3], abs=1e-3)
    core = target_truth(back.data, "core", label_names=back.metadata["label_names"])
    assert core.sum() == (regions >= 2).sum()  # read as 2023 labels it would be the 1s
    assert target_truth(back.data, "core").sum() == (regions == 1).sum() + (regions == 3).sum()


def test_tiff_without_names_opens_without_them(brainix, tmp_path):
    _, flair, roi = brainix
    export_labels(roi, "tiff", tmp_path / "roi.tif", source=flair)
    assert "label_names" not in _one(tmp_path / "roi.tif").metadata


def test_dicom_seg_opens_through_the_reader_on_the_source_grid(brainix):
    root, flair, roi = brainix
    (out,) = export_labels(roi, "dicom-seg", root / "seg" / "roi_seg.dcm", source=flair)
    assert napari_get_reader(str(out)) is not None
    back = _one(out)
    assert back.kind == "labels"
    np.testing.assert_array_equal(back.data, roi)
    assert check_same_grid(back, flair) == ""
    # Found its source series, so it can be exported as DICOM-SEG again.
    assert _series_uid(back) == _series_uid(flair)


def test_dicom_seg_alone_still_lands_in_place(brainix, tmp_path):
    root, flair, roi = brainix
    out = root / "seg" / "roi_seg.dcm"
    if not out.exists():
        export_labels(roi, "dicom-seg", out, source=flair)
    alone = tmp_path / "a" / "b"
    alone.mkdir(parents=True)
    shutil.copy(out, alone / "seg.dcm")
    back = _one(alone / "seg.dcm")
    assert back.kind == "labels" and not back.metadata["warnings"]
    # Every source slice is a frame of the SEG: without its series it is still the series' grid.
    np.testing.assert_array_equal(back.data, roi)
    np.testing.assert_allclose(back.affine, flair.affine, atol=1e-4)


@pytest.mark.filterwarnings("ignore:The string .* is unlikely to represent")
def test_a_seg_without_its_empty_frames_alone_is_the_labelled_slab(brainix, tmp_path):
    """A SEG from another tool that left out its empty frames: the slab of labelled slices,
    at the right world position, with a warning that only those are shown."""
    import highdicom as hd
    import pydicom

    root, flair, roi = brainix
    files = [str(f) for f in flair.metadata["dicom"].slice_files]
    from napari_tumorseg.io.orientation import to_source_order

    in_files, _ = to_source_order(roi, flair)
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    for ds in sources:
        ds.PatientSex = ""  # BRAINIX writes "0000", which highdicom refuses
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=(in_files > 0).astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[hd.seg.SegmentDescription(
            segment_number=1, segment_label="roi",
            segmented_property_category=hd.sr.CodedConcept("49755003", "SCT", "Morphologically Abnormal Structure"),
            segmented_property_type=hd.sr.CodedConcept("108369006", "SCT", "Neoplasm"),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)],
        series_instance_uid=hd.UID(), series_number=9, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="other", manufacturer_model_name="other", software_versions="1",
        device_serial_number="1", omit_empty_frames=True,
    )
    (tmp_path / "a").mkdir()
    seg.save_as(tmp_path / "a" / "other.dcm")
    back = _one(tmp_path / "a" / "other.dcm")
    assert back.kind == "labels" and "only the labelled slices" in back.metadata["warnings"][0]
    zs = np.flatnonzero(roi.any(axis=(1, 2)))
    np.testing.assert_array_equal(back.data > 0, roi[zs[0]:zs[-1] + 1] > 0)
    np.testing.assert_allclose(back.affine @ [0, 0, 0, 1], flair.affine @ [zs[0], 0, 0, 1], atol=1e-3)


def test_coco_export_reopens_as_labels_on_the_source_grid(brainix, tmp_path):
    _, flair, roi = brainix
    (out,) = export_labels(roi, "coco", tmp_path / "roi.json", source=flair)
    assert napari_get_reader(str(out)) is not None
    back = _one(out)
    assert back.kind == "labels"
    np.testing.assert_array_equal(back.data > 0, roi > 0)
    assert check_same_grid(back, flair) == ""


def test_a_roboflow_coco_file_opens_as_images_and_labels(shared_data):
    path = shared_data / "coco_madhav" / "test" / "_annotations.coco.json"
    assert napari_get_reader(str(path)) is not None
    vols = read_path(path)
    kinds = [v.kind for v in vols]
    assert kinds == ["image", "labels"]
    image, labels = vols
    assert image.data.shape == labels.data.shape and labels.data.any()
    # The first image's polygons, drawn by the COCO module, are the first slice.
    from napari_tumorseg.coco.to_masks import render_coco_image

    first_id = json.loads(path.read_text())["images"][0]["id"]
    _, mask, _ = render_coco_image(path, first_id, per_category=True)
    np.testing.assert_array_equal(labels.data[0], mask)


def test_other_json_is_not_claimed(tmp_path):
    (tmp_path / "config.json").write_text('{"images": [], "note": "no annotations list"}')
    assert napari_get_reader(str(tmp_path / "config.json")) is None


def test_a_seg_saved_into_the_study_folder_opens_with_it(brainix):
    root, flair, roi = brainix
    out = root / "seg" / "roi_seg.dcm"
    if not out.exists():
        export_labels(roi, "dicom-seg", out, source=flair)
    vols = read_path(root)
    assert [v.kind for v in vols] == ["image", "labels"]
    np.testing.assert_array_equal(vols[1].data, roi)
    assert check_same_grid(vols[1], vols[0]) == ""
