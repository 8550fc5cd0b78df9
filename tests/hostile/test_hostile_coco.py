"""Hostile COCO exports: each is refused or reported in one line, never a crash.

Polygons with huge finite coordinates segfaulted inside pycocotools (killing napari with
unsaved edits); negative RLE counts, category 70000 with --per-category and deeply nested
JSON ended in tracebacks; width/height in the JSON were trusted over the image.

Invalid records are all or nothing (issue 14): by default nothing is written and the exit
status is 1; ``--skip-invalid`` writes the valid images' masks, exit 0, one warning line per
skipped record. (It used to exit 1 with the valid masks written, against the README.)
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
    assert "invalid" in line and "nothing written" in line and code == 1
    assert not (tmp_path / "masks").exists()  # all or nothing: the one image had a bad record


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
    # A note, not an invalid record: the mask fits the image, and the user is told once.
    assert code == 0, err
    (line,) = err.strip().splitlines()
    assert "warning" in line and all(w in line for w in ("a.jpg", f"{w}x{h}", "40x48"))
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


# --- all or nothing, or --skip-invalid: one rule for the CLI and the COCO dock's core ------


def _mixed_export(folder: Path, n_bad: int = 1) -> Path:
    """a.jpg and b.jpg valid; c.jpg with a polygon at 3e9 (plus n_bad - 1 more bad annotations);
    d.jpg listed but missing; one annotation of an image the file does not list."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in "abc":
        Image.fromarray(np.full((32, 32), 90, np.uint8)).save(folder / f"{name}.jpg")
    images = [{"id": i, "file_name": f"{n}.jpg", "width": 32, "height": 32} for i, n in enumerate("abcd", 1)]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [SQUARE]},
            {"id": 2, "image_id": 2, "category_id": 1, "segmentation": [[2, 2, 12, 2, 12, 30, 2, 30]]},
            {"id": 3, "image_id": 3, "category_id": 1, "segmentation": [SQUARE]},
            {"id": 4, "image_id": 3, "category_id": 1, "segmentation": [[1, 1, 3e9, 1, 10, 10]]},
            {"id": 5, "image_id": 99, "category_id": 1, "segmentation": [SQUARE]}]
    anns += [{"id": 100 + k, "image_id": 3, "category_id": 1, "segmentation": [[0, 0, 1e12, 0, 5, 5]]}
             for k in range(n_bad - 1)]
    doc = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "tumor"}]}
    (folder / "_annotations.coco.json").write_text(json.dumps(doc))
    return folder


def test_invalid_records_write_nothing_by_default(tmp_path, cli):
    src = _mixed_export(tmp_path / "coco")
    out = tmp_path / "masks"
    out.mkdir()
    tifffile.imwrite(out / "keep.tif", np.full((4, 4), 3, np.uint8))  # the user's own file
    before = snapshot(out)
    code, stdout, err = cli("coco2mask", src, "-o", out)
    assert code == 1 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[0] == ("tumorseg coco2mask: error: nothing written: 3 invalid records "
                        "(--skip-invalid writes the valid images' masks):")
    reasons = [ln.strip() for ln in lines[1:]]
    assert len(reasons) == 3
    assert any("d.jpg" in r and "missing" in r for r in reasons)
    assert any("annotation 5" in r and "image_id 99" in r for r in reasons)
    assert any(r.startswith("c.jpg: annotation 4") and "outside" in r for r in reasons)
    assert snapshot(out) == before  # not a.tif, not b.tif: nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco", "masks"]  # no staging left


def test_skip_invalid_writes_the_valid_images_and_warns_once_per_record(tmp_path, cli):
    src = _mixed_export(tmp_path / "coco")
    code, stdout, err = cli("coco2mask", src, "-o", tmp_path / "masks", "--skip-invalid")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["a.tif", "b.tif"]
    # c.jpg has a valid annotation too, but a mask without its bad one would be a wrong outline.
    warnings_ = err.strip().splitlines()
    assert len(warnings_) == 3 and all(w.startswith("tumorseg coco2mask: warning: skipped ") for w in warnings_)
    assert any("c.jpg: annotation 4" in w for w in warnings_)
    assert tifffile.imread(tmp_path / "masks" / "b.tif")[20, 5] == 255
    assert "wrote 2 masks" in stdout


def test_many_invalid_records_are_listed_ten_and_counted(tmp_path, cli):
    src = _mixed_export(tmp_path / "coco", n_bad=13)
    code, _, err = cli("coco2mask", src, "-o", tmp_path / "masks")
    lines = err.strip().splitlines()
    assert code == 1 and "15 invalid records" in lines[0]
    assert len(lines) == 1 + 10 + 1 and lines[-1].strip() == "... and 5 more"
    assert not (tmp_path / "masks").exists()


def test_the_dock_core_refuses_the_same_way(tmp_path):
    """The COCO dock iterates coco_to_masks with its defaults: the same all-or-nothing rule."""
    from napari_tumorseg.coco.to_masks import InvalidRecords, coco_to_masks

    src = _mixed_export(tmp_path / "coco")
    steps = []
    with pytest.raises(InvalidRecords) as info:
        for step in coco_to_masks(src, tmp_path / "masks"):
            steps.append(step)
    assert len(steps) == 4 and len(info.value.report.problems) == 3  # every image looked at
    message = str(info.value)
    assert message.startswith("nothing written: 3 invalid records; first: ") and "\n" not in message
    assert not (tmp_path / "masks").exists()


@pytest.mark.parametrize("listed", [True, False], ids=["in categories", "only in the annotation"])
def test_category_70000_widens_the_mask_instead_of_wrapping(tmp_path, cli, listed):
    """uint16 holds 65535: 70000 would wrap to 4464. The mask becomes uint32 instead."""
    anns = [polygon_ann(SQUARE, category_id=70000),
            {"id": 8, "image_id": 1, "category_id": 1, "segmentation": [[24, 24, 30, 24, 30, 30, 24, 30]]}]
    cats = [{"id": 1, "name": "a"}] + ([{"id": 70000, "name": "b"}] if listed else [])
    src = make_export(tmp_path / "coco", anns, categories=cats)
    code, _, err = cli("coco2mask", src, "-o", tmp_path / "masks", "--per-category")
    assert code == 0, err
    mask = tifffile.imread(tmp_path / "masks" / "a.tif")
    assert mask.dtype == np.uint32 and mask[10, 10] == 70000 and mask[27, 27] == 1
    # The same file opened in napari through the reader: the same values.
    from napari_tumorseg.io.readers import read_path

    image, labels = read_path(src / "_annotations.coco.json")
    assert int(labels.data[0, 10, 10]) == 70000 and int(labels.data[0, 27, 27]) == 1
