"""Masks -> COCO: exact pixel-boundary polygons and a stable COCO -> masks -> COCO -> masks trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import tifffile
from scipy import ndimage

from napari_tumorseg.coco.dataset import coco_from_dict, load_coco
from napari_tumorseg.coco.from_masks import (
    labels_to_coco,
    mask_folder_to_coco,
    mask_polygons,
    masks_to_coco,
)
from napari_tumorseg.coco.to_masks import annotation_rle, convert_coco_to_masks, rasterize
from napari_tumorseg.errors import TumorSegError

EIGHT = np.ones((3, 3), bool)


def remask(coco: dict, per_category: bool = False) -> dict[str, np.ndarray]:
    cs = coco_from_dict(coco, Path("x.json"), Path("."))
    return {
        im["file_name"]: rasterize(cs.anns_by_image[i], im["height"], im["width"], per_category)
        for i, im in cs.images.items()
    }


def object_ious(before: np.ndarray, after: np.ndarray) -> list[float]:
    """IoU of each 8-connected object of ``before`` with the objects of ``after`` it touches."""
    lab_a, n = ndimage.label(before > 0, structure=EIGHT)
    lab_b, _ = ndimage.label(after > 0, structure=EIGHT)
    out = []
    for k in range(1, n + 1):
        a = lab_a == k
        touching = np.setdiff1d(np.unique(lab_b[a]), [0])
        b = np.isin(lab_b, touching)
        out.append((a & b).sum() / (a | b).sum())
    return out


@pytest.fixture(scope="module")
def ravirawal_masks(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("rav")
    report = convert_coco_to_masks(shared_data / "coco_ravirawal", out)
    assert len(report.written) == 701
    return out


@pytest.mark.parametrize("split", ["train", "valid"])
def test_round_trip_on_every_ravirawal_image(ravirawal_masks, shared_data, tmp_path, split):
    """COCO -> masks -> COCO -> masks: IoU >= 0.98 per object (in fact all but hole pixels)."""
    images = shared_data / "coco_ravirawal" / split
    coco = mask_folder_to_coco(
        ravirawal_masks / split, tmp_path / "rt.json", images_dir=images, category_names={1: "Tumor"}
    )
    original = load_coco(images)
    assert sorted(im["file_name"] for im in coco["images"]) == sorted(
        im["file_name"] for im in original.images.values()
    )  # --images: the real image names, sizes from the images
    assert all(im["width"] == 640 and im["height"] == 640 for im in coco["images"])
    assert coco["categories"] == [{"id": 1, "name": "Tumor", "supercategory": ""}]
    again = remask(json.loads((tmp_path / "rt.json").read_text()))
    ious, changed, identical = [], 0, 0
    for fname, mask2 in again.items():
        mask1 = tifffile.imread(ravirawal_masks / split / (Path(fname).stem + ".tif"))
        if np.array_equal(mask1, mask2):
            identical += 1  # every object's IoU is 1
            continue
        ious += object_ious(mask1, mask2)
        changed += int((mask1 != mask2).sum())
        # Filling holes is the only change the default makes.
        assert ((mask2 > 0) == ndimage.binary_fill_holes(mask1 > 0)).all(), fname
    assert identical >= 0.9 * len(again) and len(coco["annotations"]) > 0
    assert min(ious, default=1.0) >= 0.98, min(ious)
    assert changed < 100  # of 640*640*images pixels: slivers inside self-crossing polygons
    # The annotations say what they encode: area = pycocotools' area of the segmentation.
    cs = coco_from_dict(coco, Path("x"), Path("."))
    for ann in coco["annotations"]:
        rle = annotation_rle(ann, 640, 640)
        assert mask_utils.area(rle) == ann["area"]
        np.testing.assert_allclose(mask_utils.toBbox(rle), ann["bbox"])
        assert cs.images[ann["image_id"]] and ann["iscrowd"] == 0


def test_holes_as_rle_make_the_round_trip_exact(ravirawal_masks):
    files = sorted((ravirawal_masks / "train").glob("*.tif"))[:250]
    masks = [(f.name, tifffile.imread(f)) for f in files]
    coco = masks_to_coco(masks, holes="rle")
    again = remask(coco)
    assert any(isinstance(a["segmentation"], dict) for a in coco["annotations"])  # holes exist
    for name, mask in masks:
        np.testing.assert_array_equal(again[name], mask, err_msg=name)
    # and a second trip gives the same COCO back
    assert masks_to_coco(list(again.items()), holes="rle")["annotations"] == coco["annotations"]


def test_polygons_are_exact_pixel_boundaries():
    single = np.zeros((5, 5), bool)
    single[2, 3] = True
    [square] = mask_polygons(single)
    assert sorted(map(tuple, square)) == [(2, 3), (2, 4), (3, 3), (3, 4)]  # (y, x) corners

    rng = np.random.default_rng(3)
    for _ in range(20):
        blob = ndimage.binary_opening(rng.random((40, 50)) > 0.45)
        coco = masks_to_coco([("b.tif", blob)], holes="rle")
        np.testing.assert_array_equal(remask(coco)["b.tif"] > 0, blob)
        filled = masks_to_coco([("b.tif", blob)])
        np.testing.assert_array_equal(remask(filled)["b.tif"] > 0, ndimage.binary_fill_holes(blob))


def test_components_categories_and_nesting():
    labels = np.zeros((60, 80), np.uint16)
    labels[5:30, 5:40] = 1
    labels[12:20, 15:25] = 3  # inside the 1: a hole in label 1's mask
    labels[40:42, 50:52] = 1
    labels[42:44, 52:54] = 1  # touches the previous one diagonally: same 8-connected object
    labels[50:55, 60:70] = 300
    coco = masks_to_coco([("slice.tif", labels)], category_names={1: "tumour", 3: "necrosis"})
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    assert cats == {1: "tumour", 3: "necrosis", 300: "label 300"}
    per_cat = sorted(a["category_id"] for a in coco["annotations"])
    assert per_cat == [1, 1, 3, 300]
    # outer objects come first, so painting in order puts the nested 3 back on top
    np.testing.assert_array_equal(remask(coco, per_category=True)["slice.tif"], labels)
    diag = next(a for a in coco["annotations"] if a["bbox"] == [50.0, 40.0, 4.0, 4.0])
    assert diag["area"] == 8.0


def test_binary_255_is_category_1_and_empty_masks_stay_images():
    mask = np.zeros((30, 30), np.uint8)
    mask[3:9, 4:12] = 255
    coco = masks_to_coco([("a.tif", mask), ("b.tif", np.zeros((30, 30), np.uint8))])
    assert [c["id"] for c in coco["categories"]] == [1]
    assert [a["category_id"] for a in coco["annotations"]] == [1]
    assert [im["file_name"] for im in coco["images"]] == ["a.tif", "b.tif"]
    assert coco["annotations"][0]["bbox"] == [4.0, 3.0, 8.0, 6.0]
    assert coco["annotations"][0]["area"] == 48.0


def test_labels_layer_to_coco_one_image_per_labelled_slice():
    labels = np.zeros((4, 32, 40), np.int32)
    labels[1, 5:10, 5:15] = 2
    labels[3, 20:30, 1:4] = 255
    coco = labels_to_coco(labels, name="case")
    assert [(im["file_name"], im["slice_index"]) for im in coco["images"]] == [
        ("case_z0001.tif", 1), ("case_z0003.tif", 3)
    ]
    assert sorted(c["id"] for c in coco["categories"]) == [2, 255]  # a labels layer's 255 is 255
    again = remask(coco, per_category=True)
    np.testing.assert_array_equal(again["case_z0001.tif"], labels[1])
    np.testing.assert_array_equal(again["case_z0003.tif"], labels[3])
    assert labels_to_coco(labels[1])["images"][0]["slice_index"] == 0
    with pytest.raises(TumorSegError):
        labels_to_coco(np.zeros((2, 2, 2, 2), np.uint8))
    with pytest.raises(TumorSegError):
        labels_to_coco(labels, file_names=["a.tif"])


def test_lgg_folder_pairs_masks_with_their_images(shared_data):
    patient = next(p for p in sorted((shared_data / "lgg_kaggle3m").iterdir()) if p.is_dir())
    coco = mask_folder_to_coco(patient, images_dir=patient)
    n_masks = len(list(patient.glob("*_mask.tif")))
    assert len(coco["images"]) == n_masks
    names = {im["file_name"] for im in coco["images"]}
    assert all((patient / n).is_file() and not n.endswith("_mask.tif") for n in names)
    assert {(im["width"], im["height"]) for im in coco["images"]} == {(256, 256)}
    for im in coco["images"]:
        mask = tifffile.imread(patient / im["file_name"].replace(".tif", "_mask.tif"))
        mask = mask[..., 0] if mask.ndim == 3 else mask
        got = remask({**coco, "images": [im], "annotations": [a for a in coco["annotations"] if a["image_id"] == im["id"]]})
        np.testing.assert_array_equal(got[im["file_name"]] > 0, ndimage.binary_fill_holes(mask > 0))


def test_folder_errors_are_one_line(tmp_path, ravirawal_masks):
    with pytest.raises(TumorSegError, match="not a folder"):
        mask_folder_to_coco(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TumorSegError, match="no .tif"):
        mask_folder_to_coco(tmp_path / "empty")
    with pytest.raises(TumorSegError, match="no image named"):
        mask_folder_to_coco(ravirawal_masks / "valid", images_dir=tmp_path / "empty")
    small = tmp_path / "small"
    small.mkdir()
    tifffile.imwrite(small / "x.tif", np.zeros((10, 12), np.uint8))
    img = tmp_path / "img"
    img.mkdir()
    tifffile.imwrite(img / "x.tif", np.zeros((11, 12), np.uint8))
    with pytest.raises(TumorSegError, match="mask is 12x10 but the image is 12x11"):
        mask_folder_to_coco(small, images_dir=img)
    out = tmp_path / "o.json"
    out.write_text("{}")
    with pytest.raises(TumorSegError, match="exists"):
        mask_folder_to_coco(small, out)
