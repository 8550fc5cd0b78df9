"""COCO -> TIFF masks on the real Roboflow/Kaggle exports, checked against pycocotools."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import tifffile
from PIL import Image
from pycocotools.coco import COCO
from scipy import ndimage

from napari_tumorseg.coco.dataset import find_coco_splits, load_coco
from napari_tumorseg.coco.to_masks import (
    InvalidRecords,
    convert_coco_to_masks,
    coco_to_masks,
    paint_rle,
    rasterize,
    render_coco_image,
    write_mask,
)
from napari_tumorseg.errors import TumorSegError

SETS = ["coco_pkdarabi", "coco_ravirawal"]


def reference_masks(json_path: Path) -> dict[str, np.ndarray]:
    """Union of pycocotools' annToMask per image, 0/255, keyed by mask file name."""
    coco = COCO(str(json_path))
    out = {}
    for image_id, info in coco.imgs.items():
        mask = np.zeros((info["height"], info["width"]), np.uint8)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id)):
            mask |= coco.annToMask(ann)
        out[Path(info["file_name"]).stem + ".tif"] = mask * 255
    return out


@pytest.fixture(scope="module")
def converted(shared_data, tmp_path_factory):
    """Every split of both exports converted once: {set: (out_dir, report)}."""
    root = tmp_path_factory.mktemp("masks")
    return {name: (root / name, convert_coco_to_masks(shared_data / name, root / name)) for name in SETS}


@pytest.mark.parametrize("name", SETS)
def test_every_image_gets_its_pycocotools_mask(converted, shared_data, name):
    out, report = converted[name]
    assert report.splits == ["train", "valid"]
    assert not report.missing_files and not report.orphan_annotations and not report.invalid
    for split in report.splits:
        ref = reference_masks(shared_data / name / split / "_annotations.coco.json")
        written = sorted(p.name for p in (out / split).glob("*.tif"))  # splits mirrored
        assert written == sorted(ref)
        for fname, expected in ref.items():
            mask = tifffile.imread(out / split / fname)
            assert mask.dtype == np.uint8 and mask.shape == expected.shape
            np.testing.assert_array_equal(mask, expected, err_msg=f"{split}/{fname}")
    assert len(report.written) == report.n_images == sum(
        len(load_coco(p).images) for _, p in find_coco_splits(shared_data / name)
    )


def test_empty_images_get_empty_masks(converted, shared_data):
    out, report = converted["coco_ravirawal"]
    cs = load_coco(shared_data / "coco_ravirawal" / "valid")
    empty = [im for i, im in cs.images.items() if not cs.anns_by_image[i]]
    assert len(empty) == 74  # real images without tumour in this split
    for im in empty:
        assert not tifffile.imread(out / "valid" / (Path(im["file_name"]).stem + ".tif")).any()
    assert len(report.empty) == 121  # 47 train + 74 valid


def test_pkdarabi_boxes_give_filled_rectangles(shared_data):
    cs = load_coco(shared_data / "coco_pkdarabi" / "valid")
    for ann in cs.annotations:
        im = cs.images[ann["image_id"]]
        mask = rasterize([ann], im["height"], im["width"]) > 0
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        box = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        assert box.all(), f"annotation {ann['id']} is not a filled rectangle"
        x, y, w, h = ann["bbox"]
        assert abs(box.shape[1] - w) <= 1 and abs(box.shape[0] - h) <= 1


def test_per_category_writes_category_ids(shared_data, tmp_path):
    src = shared_data / "coco_pkdarabi" / "valid"
    report = convert_coco_to_masks(src, tmp_path, per_category=True)
    coco = COCO(str(src / "_annotations.coco.json"))
    seen = set()
    for image_id, info in coco.imgs.items():
        expected = np.zeros((info["height"], info["width"]), np.uint8)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id)):  # file order, later wins
            expected[coco.annToMask(ann) > 0] = ann["category_id"]
        mask = tifffile.imread(tmp_path / (Path(info["file_name"]).stem + ".tif"))
        np.testing.assert_array_equal(mask, expected)
        seen |= set(np.unique(mask).tolist())
    assert seen == {0, 1, 2} and len(report.written) == 429


@pytest.fixture
def small_export(shared_data, tmp_path):
    """Four real ravirawal images with their JSON subset, copied into tmp_path."""
    src = shared_data / "coco_ravirawal" / "valid"
    data = json.loads((src / "_annotations.coco.json").read_text())
    with_ann = {a["image_id"] for a in data["annotations"]}
    keep = [im for im in data["images"] if im["id"] in with_ann][:3]
    keep += [im for im in data["images"] if im["id"] not in with_ann][:1]
    ids = {im["id"] for im in keep}
    folder = tmp_path / "export"
    folder.mkdir()
    for im in keep:
        shutil.copy(src / im["file_name"], folder / im["file_name"])
    subset = dict(data, images=keep, annotations=[a for a in data["annotations"] if a["image_id"] in ids])
    (folder / "_annotations.coco.json").write_text(json.dumps(subset))
    return folder, subset


def _write_json(folder: Path, data: dict) -> None:
    (folder / "_annotations.coco.json").write_text(json.dumps(data))


def test_missing_image_orphan_and_bad_polygon_write_nothing_unless_skipped(small_export, tmp_path):
    folder, data = small_export
    data = copy.deepcopy(data)
    data["images"].append(dict(data["images"][0], id=777, file_name="not_there.jpg"))
    data["annotations"].append(dict(data["annotations"][0], id=901, image_id=9999))
    data["annotations"].append(dict(data["annotations"][0], id=902, segmentation=[[1, 2, 3, 4]]))
    _write_json(folder, data)
    # All or nothing: three invalid records, no mask at all.
    with pytest.raises(InvalidRecords) as info:
        convert_coco_to_masks(folder, tmp_path / "out")
    report = info.value.report
    assert [p.name for p in report.missing_files] == ["not_there.jpg"]
    assert len(report.orphan_annotations) == 1 and "9999" in report.orphan_annotations[0]
    assert len(report.invalid) == 1 and "902" in report.invalid[0]
    assert report.problems[0] == "not_there.jpg: image file missing"  # the file, not its folders
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left

    # --skip-invalid: the valid images get their masks; the one with a bad polygon gets none.
    report = convert_coco_to_masks(folder, tmp_path / "out", skip_invalid=True)
    assert len(report.problems) == 3 and len(report.written) == 3
    assert "1 image files missing" in report.summary() and "1 orphan annotations" in report.summary()
    im = data["images"][0]
    assert not (tmp_path / "out" / (Path(im["file_name"]).stem + ".tif")).exists()
    assert not (tmp_path / "out" / "not_there.tif").exists()
    for other in data["images"][1:4]:
        anns = [a for a in data["annotations"] if a["image_id"] == other["id"]]
        ref = np.zeros((other["height"], other["width"]), np.uint8)
        for a in anns:
            rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], other["height"], other["width"]))
            ref |= mask_utils.decode(rle)
        written = tifffile.imread(tmp_path / "out" / (Path(other["file_name"]).stem + ".tif"))
        np.testing.assert_array_equal(written, ref * 255)


def test_existing_masks_are_kept_unless_overwrite(small_export, tmp_path):
    folder, data = small_export
    out = tmp_path / "out"
    first = convert_coco_to_masks(folder, out)
    target = first.written[0]
    original = tifffile.imread(target)
    assert original.any()
    tifffile.imwrite(target, np.zeros_like(original))  # a user's own edit
    again = convert_coco_to_masks(folder, out)
    assert len(again.skipped_existing) == 4 and not again.written
    assert not tifffile.imread(target).any()
    forced = convert_coco_to_masks(folder, out, overwrite=True)
    assert len(forced.written) == 4
    np.testing.assert_array_equal(tifffile.imread(target), original)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_clipping_rle_iscrowd_and_bbox_only(small_export, tmp_path):
    folder, data = small_export
    data = copy.deepcopy(data)
    im = data["images"][3]  # the image without annotations
    h, w = im["height"], im["width"]
    base = {"image_id": im["id"], "category_id": 1, "iscrowd": 0, "area": 0}
    outside = dict(base, id=1001, segmentation=[[-40.5, 100, 60, 90.2, 55, 700, -10, 650]], bbox=[0, 0, 1, 1])
    square = np.zeros((h, w), np.uint8, order="F")
    square[300:340, 400:460] = 1
    crowd = dict(base, id=1002, iscrowd=1, segmentation={"size": [h, w], "counts": _uncompressed_counts(square)})
    compressed = mask_utils.encode(np.asfortranarray(np.roll(square, 100, axis=0)))
    rle_str = dict(base, id=1003, segmentation={"size": [h, w], "counts": compressed["counts"].decode()})
    box_only = dict(base, id=1004, segmentation=[], bbox=[500.0, 20.0, 30.5, 12.0])
    data["annotations"] += [outside, crowd, rle_str, box_only]
    _write_json(folder, data)
    report = convert_coco_to_masks(folder, tmp_path / "out")
    assert not report.invalid
    mask = tifffile.imread(tmp_path / "out" / (Path(im["file_name"]).stem + ".tif"))

    coco = COCO(str(folder / "_annotations.coco.json"))
    expected = np.zeros((h, w), np.uint8)
    for ann in (outside, crowd, rle_str):
        expected |= coco.annToMask(coco.anns[ann["id"]])
    expected[20:32, 500:531] = 1  # the bbox, rasterised as its polygon
    np.testing.assert_array_equal(mask, expected * 255)
    assert mask[:, 0].any() and mask[-1].any()  # clipped at the left and bottom edges, kept inside


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    flat = mask.ravel(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    return ([0] + counts) if flat[0] else counts


def test_paint_rle_matches_pycocotools_decode(shared_data):
    cs = load_coco(shared_data / "coco_ravirawal" / "train")
    rng = np.random.default_rng(0)
    rles = [mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], 640, 640)) for a in cs.annotations[:80]]
    noise = np.asfortranarray(rng.random((57, 91)) > 0.5).astype(np.uint8)
    rles += [mask_utils.encode(noise), mask_utils.encode(np.asfortranarray(np.ones((57, 91), np.uint8)))]
    for rle in rles:
        out = np.zeros(rle["size"], np.uint8)
        paint_rle(out, rle, 7)
        np.testing.assert_array_equal(out, mask_utils.decode(rle) * 7)


@pytest.mark.parametrize("compression", ["packbits", "none", "deflate"])
def test_written_tiffs_read_back_everywhere(small_export, tmp_path, compression):
    folder, _ = small_export
    ref = convert_coco_to_masks(folder, tmp_path / "ref", compression="none")
    report = convert_coco_to_masks(folder, tmp_path / compression, compression=compression)
    for a, b in zip(sorted(ref.written), sorted(report.written)):
        expected = tifffile.imread(a)
        np.testing.assert_array_equal(tifffile.imread(b), expected)
        with Image.open(b) as im:
            np.testing.assert_array_equal(np.asarray(im), expected)
    big = np.arange(300 * 7, dtype=np.uint16).reshape(7, 300)  # uint16 per-category masks
    write_mask(tmp_path / "big.tif", big, compression=compression)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "big.tif"), big)


def test_generator_progress_workers_and_cancel(shared_data, tmp_path):
    src = shared_data / "coco_ravirawal" / "valid"
    steps = list(coco_to_masks(src, tmp_path / "a", workers=2))
    assert [p.done for p in steps] == list(range(1, 202)) and steps[-1].total == 201
    single = convert_coco_to_masks(src, tmp_path / "b")
    for p in single.written:
        np.testing.assert_array_equal(tifffile.imread(p), tifffile.imread(tmp_path / "a" / p.name))
    gen = coco_to_masks(src, tmp_path / "c", workers=2)
    for _ in range(10):
        last = next(gen)
    gen.close()  # what a GUI's cancel does
    files = list((tmp_path / "c").iterdir())
    assert 10 <= len(files) <= 14 and all(not f.name.startswith(".") for f in files)
    assert len(last.report.written) == 10


def test_render_coco_image_for_the_preview(shared_data, converted):
    src = shared_data / "coco_ravirawal" / "valid"
    cs = load_coco(src)
    image_id = next(i for i, anns in cs.anns_by_image.items() if len(anns) >= 1)
    record = cs.images[image_id]
    pixels, mask, polygons = render_coco_image(cs, record["file_name"])
    assert pixels.shape[:2] == (640, 640)
    np.testing.assert_array_equal(
        mask, tifffile.imread(converted["coco_ravirawal"][0] / "valid" / (Path(record["file_name"]).stem + ".tif"))
    )
    segs = [s for a in cs.anns_by_image[image_id] for s in a["segmentation"]]
    assert len(polygons) == len(segs)
    # (row, col) in napari data coordinates: COCO (x, y) corners minus half a pixel.
    np.testing.assert_allclose(polygons[0], np.asarray(segs[0]).reshape(-1, 2)[:, ::-1] - 0.5)
    _, by_id, _ = render_coco_image(src, image_id, per_category=True)
    assert set(np.unique(by_id)) <= {0, 1}


def test_not_coco_and_missing_paths_are_one_line_errors(tmp_path):
    bad = tmp_path / "x.json"
    for text, expect in [("{oops", "not valid JSON"), ('{"images": []}', "no 'annotations'"), ("[1, 2]", "not a COCO")]:
        bad.write_text(text)
        with pytest.raises(TumorSegError, match=expect) as err:
            load_coco(bad)
        assert "\n" not in str(err.value)
    with pytest.raises(TumorSegError, match="does not exist"):
        list(coco_to_masks(tmp_path / "missing", tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(TumorSegError, match="_annotations.coco.json"):
        find_coco_splits(tmp_path / "empty")


def test_mask_components_are_the_annotations(converted, shared_data):
    """Sanity on real outlines: each written ravirawal mask has as many blobs as polygons or fewer."""
    out, _ = converted["coco_ravirawal"]
    cs = load_coco(shared_data / "coco_ravirawal" / "train")
    for image_id, anns in list(cs.anns_by_image.items())[:100]:
        mask = tifffile.imread(out / "train" / (Path(cs.images[image_id]["file_name"]).stem + ".tif"))
        n = ndimage.label(mask > 0, structure=np.ones((3, 3)))[1]
        assert (n == 0) == (not anns)
