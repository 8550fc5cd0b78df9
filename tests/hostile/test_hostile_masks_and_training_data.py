"""mask2coco on masks that are not label masks, and training folders that cannot teach.

NaN masks ended in a traceback; label -1 and --category 0 became COCO categories 0 and
-1; all-empty masks and images without their mask (or masks without their image) were
accepted without a word.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.hostile.conftest import assert_one_line_error

BAD_MASKS = {
    "nan": np.full((8, 8), np.nan, np.float32),
    "one nan": np.where(np.eye(8, dtype=bool), np.nan, 1).astype(np.float32),
    "inf": np.full((8, 8), np.inf, np.float32),
    "fractions": np.full((8, 8), 0.5, np.float32),
    "minus one": np.array([[0, -1], [1, 0]], np.int16),
    "all negative": np.full((4, 4), -7, np.int32),
    "negative float": np.full((4, 4), -2.0, np.float32),
}


@pytest.mark.parametrize("mask", list(BAD_MASKS.values()), ids=list(BAD_MASKS))
def test_mask2coco_refuses_masks_that_are_not_labels(tmp_path, cli, mask):
    masks = tmp_path / "masks"
    masks.mkdir()
    tifffile.imwrite(masks / "case_12.tif", mask)
    out = tmp_path / "coco.json"
    code, _, err = cli("mask2coco", masks, "-o", out)
    assert_one_line_error(code, err, "case_12.tif")
    assert not out.exists()


@pytest.mark.parametrize("spec", ["0=background", "00=x", "-1=x", "a=b", "1=", "=x"])
def test_mask2coco_refuses_category_zero_and_garbage(tmp_path, cli, spec):
    masks = tmp_path / "masks"
    masks.mkdir()
    tifffile.imwrite(masks / "m.tif", np.eye(8, dtype=np.uint8))
    code, _, err = cli("mask2coco", masks, "-o", tmp_path / "c.json", f"--category={spec}")
    assert_one_line_error(code, err, "--category")
    assert not (tmp_path / "c.json").exists()


def test_masks_to_coco_core_refuses_category_zero():
    from napari_tumorseg.coco.from_masks import masks_to_coco
    from napari_tumorseg.errors import TumorSegError

    with pytest.raises(TumorSegError, match="start at 1"):
        masks_to_coco([("a.png", np.eye(4, dtype=np.uint8))], category_names={0: "bg"})


def test_existing_json_survives_a_refused_mask(tmp_path, cli):
    masks = tmp_path / "masks"
    masks.mkdir()
    tifffile.imwrite(masks / "m.tif", np.full((8, 8), np.nan, np.float32))
    out = tmp_path / "coco.json"
    out.write_text("keep me")
    code, _, err = cli("mask2coco", masks, "-o", out, "--overwrite")
    assert_one_line_error(code, err, "m.tif")
    assert out.read_text() == "keep me"


# ----------------------------------------------------------------------------- training data


def _image_mask_folder(root, n=4, empty=False, orphan_images=(), orphan_masks=()):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((32, 32)) * 255).astype(np.uint8)).save(root / "images" / f"p{i}.png")
        mask = np.zeros((32, 32), np.uint8)
        if not empty:
            mask[8:16, 8 + i:16 + i] = 255
        if i not in orphan_images:
            Image.fromarray(mask).save(root / "masks" / f"p{i}.png")
    for name in orphan_masks:
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "masks" / name)
    return root


TRAIN = ["--model", "unet", "--tiny", "--epochs", "1", "--size", "32", "--batch-size", "2",
         "--threads", "1", "--recipe", "paper", "--no-augment"]


def test_all_empty_masks_are_refused(tmp_path, cli):
    data = _image_mask_folder(tmp_path / "data", empty=True)
    code, out, err = cli("train", "--data", data, "--out", tmp_path / "run", *TRAIN)
    assert_one_line_error(code, err, "every training mask", "empty")
    assert not list((tmp_path / "run").glob("*.pt")) if (tmp_path / "run").exists() else True


@pytest.mark.parametrize("orphans", [
    {"orphan_images": (3,)}, {"orphan_masks": ("zz.png",)}, {"orphan_images": (0, 3), "orphan_masks": ("q.png",)},
], ids=["image without mask", "mask without image", "both"])
def test_unmatched_pairs_are_named_in_a_warning(tmp_path, capsys, orphans):
    from napari_tumorseg.training.datasets import open_source, split_refs

    data = _image_mask_folder(tmp_path / "data", **orphans)
    source = open_source(data)
    _, _, warns = split_refs(source, 0.25, 0)
    (note,) = [w for w in warns if "no partner" in w]
    for i in orphans.get("orphan_images", ()):
        assert f"images/p{i}.png" in note
    for name in orphans.get("orphan_masks", ()):
        assert f"masks/{name}" in note


def test_unmatched_pairs_reach_the_cli(tmp_path, cli):
    data = _image_mask_folder(tmp_path / "data", orphan_images=(3,))
    code, out, err = cli("train", "--data", data, "--out", tmp_path / "run", *TRAIN)
    assert code == 0, err
    assert "images/p3.png" in err and "no partner" in err


def test_no_pair_at_all_names_the_reason(tmp_path, cli):
    data = _image_mask_folder(tmp_path / "data", n=2, orphan_images=(0, 1), orphan_masks=("x.png",))
    code, _, err = cli("train", "--data", data, "--out", tmp_path / "run", *TRAIN)
    assert_one_line_error(code, err, "no partner")
