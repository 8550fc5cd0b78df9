"""Hostile COCO exports: each is refused or reported in one line, never a crash.

Polygons with huge finite coordinates segfaulted inside pycocotools (killing napari with
unsaved edits); negative RLE counts, category 70000 with --per-category and deeply nested
JSON ended in tracebacks; width/height in the JSON were trusted over the image.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.hostile.conftest import assert_one_line_error, snapshot

REPO = Path(__file__).resolve().parents[2]


def make_export(folder: Path, annotations: list, images=None, categories=None, size=(32, 32)) -> Path:
    """A Roboflow-style export: _annotations.coco.json with one grey JPEG beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    Image.fromarray(np.full((h, w), 90, np.uint8)).save(folder / "a.jpg")
    images = images if images is not None else [{"id": 1, "file_name": "a.jpg", "width": w, "height": h}]
    doc = {"images": images, "annotations": annotations,
           "categories": categories if categories is not None else [{"id": 1, "name": "tumor"}]}
    (folder / "_annotations.coco.json").write_text(json.dumps(doc))
    return folder


def polygon_ann(points, **extra) -> dict:
    return {"id": 7, "image_id": 1, "category_id": 1, "segmentation": [points], **extra}


SQUARE = [4, 4, 20, 4, 20, 20, 4, 20]

HUGE = [3e9, -3e9, 2.2e9, 4.3e8, 1e7, 1e12, 1.7e308, -1e7]


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize("where", ["vertex", "second polygon", "bbox only"])
def test_huge_coordinates_are_refused_before_pycocotools(tmp_path, cli, value, where):
    if where == "vertex":
        ann = polygon_ann([1, 1, value, 1, 10, 10])
    elif where == "second polygon":
        ann = {"id": 7, "image_id": 1, "category_id": 1, "segmentation": [SQUARE, [0, 0, value, value, 5, 0]]}
    else:
        ann = {"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 1, abs(value), 5]}
    src = make_export(tmp_path / "coco", [ann])
    code, out, err = cli("coco2mask", src, "-o", tmp_path / "masks")
    line = assert_one_line_error(code, err, "a.jpg", "annotation 7", "outside")
    assert "invalid" in line
    # The other images (here: none) are still converted; the bad annotation is left out.
    mask = tifffile.imread(tmp_path / "masks" / "a.tif")
    assert mask.shape == (32, 32)


def test_huge_coordinate_never_segfaults_the_process(tmp_path):
    """The crash class itself, in a child process: a segfault is exit -11, not a Python error."""
    src = make_export(tmp_path / "coco", [polygon_ann([0, 0, 3e9, 0, 3e9, 3e9])])
    proc = subprocess.run(
        [sys.executable, "-m", "napari_tumorseg.cli", "coco2mask", str(src), "-o", str(tmp_path / "m")],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert_one_line_error(proc.returncode, proc.stderr, "outside")


def test_huge_coordinate_preview_in_the_coco_dock_core(tmp_path):
    """The COCO dock previews through render_coco_image: the same check protects napari."""
    from napari_tumorseg.coco.to_masks import render_coco_image

    src = make_export(tmp_path / "coco", [polygon_ann([0, 0, 3e9, 0, 3e9, 3e9])])
    _, mask, _ = render_coco_image(src / "_annotations.coco.json", "a.jpg")
    assert mask.shape == (32, 32) and not mask.any()


BAD_RLE = {
    "negative first run": [-5, 10, 1019],
    "negative middle run": [5, -10, 1029],
    "fractional run": [1.5, 10, 1012.5],
    "string run": ["5", 10, 1009],
    "too few pixels": [5, 10, 10],
    "too many pixels": [5, 10, 2000],
    "bool runs": [True, False, 1022],
}


@pytest.mark.parametrize("counts", list(BAD_RLE.values()), ids=list(BAD_RLE))
def test_bad_uncompressed_rle_counts(tmp_path, cli, counts):
    ann = {"id": 7, "image_id": 1, "category_id": 1, "iscrowd": 1,
           "segmentation": {"size": [32, 32], "counts": counts}}
    src = make_export(tmp_path / "coco", [ann])
    code, _, err = cli("coco2mask", src, "-o", tmp_path / "masks")
    assert_one_line_error(code, err, "a.jpg", "annotation 7", "RLE")


@pytest.mark.parametrize("counts", ["!!!!", "0" * 20 + "~", "PPPP", "zzzz" * 3, ""], ids=str)
@pytest.mark.parametrize("per_category", [False, True])
def test_corrupt_compressed_rle(tmp_path, cli, counts, per_category):
    ann = {"id": 7, "image_id": 1, "category_id": 1, "iscrowd": 1,
           "segmentation": {"size": [32, 32], "counts": counts}}
    src = make_export(tmp_path / "coco", [ann])
    argv = ["coco2mask", src, "-o", tmp_path / "masks"] + (["--per-category"] if per_category else [])
    code, _, err = cli(*argv)
    if counts == "":  # an empty string is an all-background RLE in pycocotools: legal
        assert code == 0, err
        return
    assert_one_line_error(code, err, "a.jpg", "RLE")


@pytest.mark.parametrize("cat", [256, 65535, 65536, 70000, 2**31 + 5])
def test_large_category_ids_fit_the_mask_with_per_category(tmp_path, cli, cat):
    src = make_export(tmp_path / "coco", [polygon_ann(SQUARE, category_id=cat)],
                      categories=[{"id": cat, "name": "x"}])
    code, out, err = cli("coco2mask", src, "-o", tmp_path / "masks", "--per-category")
    assert code == 0, err
    mask = tifffile.imread(tmp_path / "masks" / "a.tif")
    assert int(mask.max()) == cat and mask.dtype.itemsize >= (1 if cat < 256 else 2 if cat < 65536 else 4)


@pytest.mark.parametrize("cat", [2**32, 2**40, -1, "1", 1.0, None])
def test_unstorable_category_ids_are_invalid_records(tmp_path, cli, cat):
    src = make_export(tmp_path / "coco", [polygon_ann(SQUARE, category_id=cat)])
    code, _, err = cli("coco2mask", src, "-o", tmp_path / "masks", "--per-category")
    assert_one_line_error(code, err, "annotation 7", "category_id")


NESTED = {
    "deep lists": "[" * 100_000 + "]" * 100_000,
    "deep objects": '{"a":' * 100_000 + "1" + "}" * 100_000,
    "deep inside images": '{"images": ' + "[" * 50_000 + "]" * 50_000 + ', "annotations": []}',
}


@pytest.mark.parametrize("text", list(NESTED.values()), ids=list(NESTED))
def test_deeply_nested_json(tmp_path, cli, text):
    folder = tmp_path / "coco"
    folder.mkdir()
    (folder / "_annotations.coco.json").write_text(text)
    code, _, err = cli("coco2mask", folder, "-o", tmp_path / "masks")
    assert_one_line_error(code, err, "_annotations.coco.json")
    assert not (tmp_path / "masks").exists()


NOT_COCO = {
    "list": "[]",
    "string": '"coco"',
    "number": "42",
    "null": "null",
    "no images": '{"annotations": []}',
    "images not a list": '{"images": {}, "annotations": []}',
    "categories not a list": '{"images": [], "annotations": [], "categories": 3}',
    "truncated": '{"images": [{"id": 1',
    "empty file": "",
    "binary": "\x00\x01\x02\xff",
}


@pytest.mark.parametrize("text", list(NOT_COCO.values()), ids=list(NOT_COCO))
def test_files_that_are_not_coco(tmp_path, cli, text):
    folder = tmp_path / "coco"
    folder.mkdir()
    (folder / "_annotations.coco.json").write_bytes(text.encode("latin-1"))
    code, _, err = cli("coco2mask", folder, "-o", tmp_path / "masks")
    assert_one_line_error(code, err, "_annotations.coco.json")
    assert not (tmp_path / "masks").exists()


@pytest.mark.parametrize("claimed", [(640, 100), (100, 640), (31, 32), (256, 256), (1, 1)])
def test_json_size_disagreeing_with_the_image_uses_the_image(tmp_path, cli, claimed):
    w, h = claimed
    src = make_export(tmp_path / "coco", [polygon_ann(SQUARE)],
                      images=[{"id": 1, "file_name": "a.jpg", "width": w, "height": h}], size=(48, 40))
    code, out, err = cli("coco2mask", src, "-o", tmp_path / "masks")
    assert_one_line_error(code, err, "a.jpg", f"{w}x{h}", "40x48")
    mask = tifffile.imread(tmp_path / "masks" / "a.tif")
    assert mask.shape == (48, 40)
    assert mask[10, 10] == 255  # the square is painted on the image's grid


@pytest.mark.parametrize("claimed", [(20000, 20000), (16385, 10), (10, 100000), (9000, 9000)])
@pytest.mark.parametrize("with_image", [False, True])
def test_absurd_sizes_are_refused_without_allocating(tmp_path, cli, claimed, with_image):
    w, h = claimed
    src = tmp_path / "coco"
    make_export(src, [polygon_ann(SQUARE)],
                images=[{"id": 1, "file_name": "a.jpg", "width": w, "height": h}])
    if not with_image:
        (src / "a.jpg").unlink()
    code, _, err = cli("coco2mask", src, "-o", tmp_path / "masks")
    assert_one_line_error(code, err, "_annotations.coco.json", "larger")
    assert not list((tmp_path / "masks").rglob("*.tif")) if (tmp_path / "masks").exists() else True


@pytest.mark.parametrize("value", [0, -5, "32", 1.5, True, None])
@pytest.mark.parametrize("key", ["width", "height"])
def test_bad_image_sizes(tmp_path, cli, key, value):
    image = {"id": 1, "file_name": "a.jpg", "width": 32, "height": 32, key: value}
    src = make_export(tmp_path / "coco", [polygon_ann(SQUARE)], images=[image])
    code, _, err = cli("coco2mask", src, "-o", tmp_path / "masks")
    assert_one_line_error(code, err, key)


def test_unreadable_image_gets_no_mask(tmp_path, cli):
    src = make_export(tmp_path / "coco", [polygon_ann(SQUARE)])
    (src / "a.jpg").write_bytes(b"not a jpeg at all")
    code, _, err = cli("coco2mask", src, "-o", tmp_path / "masks")
    assert_one_line_error(code, err, "a.jpg", "unreadable")
    assert not (tmp_path / "masks" / "a.tif").exists()


def test_existing_masks_are_never_overwritten_by_a_hostile_run(tmp_path, cli):
    src = make_export(tmp_path / "coco", [polygon_ann([0, 0, 3e9, 0, 3e9, 3e9])])
    out = tmp_path / "masks"
    out.mkdir()
    tifffile.imwrite(out / "a.tif", np.full((32, 32), 7, np.uint8))
    before = snapshot(out)
    code, _, err = cli("coco2mask", src, "-o", out)
    assert snapshot(out) == before
