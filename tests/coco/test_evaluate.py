"""``tumorseg evaluate PRED <COCO export>``: per-image Dice, false-positive images, pooled Dice.

The COCO JSON used to be refused ("unsupported file type '.coco.json'") and the folder's
JPGs were read as the ground truth.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_tumorseg.cli import main
from napari_tumorseg.coco.evaluate import evaluate_coco


@pytest.fixture(scope="module")
def valid_split(shared_data, tmp_path_factory):
    """coco_ravirawal/valid and its masks as coco2mask writes them (the perfect prediction)."""
    src = shared_data / "coco_ravirawal" / "valid"
    masks = tmp_path_factory.mktemp("masks")
    assert main(["coco2mask", str(src), "-o", str(masks), "-q"]) == 0
    return src, masks


def test_perfect_prediction_scores_one_on_every_image(valid_split, capsys):
    src, masks = valid_split
    for gt in (src, src / "_annotations.coco.json"):
        capsys.readouterr()
        assert main(["evaluate", str(masks), str(gt), "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["n_images"] == len(list(masks.glob("*.tif"))) == 201
        assert result["pooled"]["dice"] == 1.0
        assert all(r["dice"] == 1.0 for r in result["per_image"])
        assert result["false_positive_images"] == [] and result["missed_images"] == []


def test_false_positive_and_missed_images_are_counted(valid_split, tmp_path):
    src, masks = valid_split
    pred = tmp_path / "pred"
    pred.mkdir()
    result = evaluate_coco(masks, src)
    empty = next(r["file_name"] for r in result["per_image"] if r["gt_pixels"] == 0)
    tumour = [r["file_name"] for r in result["per_image"] if r["gt_pixels"] > 0][:2]
    for f in masks.glob("*.tif"):
        m = tifffile.imread(f)
        stem = f.stem
        if stem == empty.rsplit(".", 1)[0]:
            m = m.copy()
            m[:20, :20] = 255  # tumour where none is annotated
        if stem in (t.rsplit(".", 1)[0] for t in tumour):
            m = np.zeros_like(m)  # tumour missed
        tifffile.imwrite(pred / f.name, m)
    result = evaluate_coco(pred, src / "_annotations.coco.json")
    assert result["false_positive_images"] == [empty]
    assert sorted(result["missed_images"]) == sorted(tumour)
    per = {r["file_name"]: r for r in result["per_image"]}
    assert per[empty]["dice"] == 0.0 and per[empty]["pred_pixels"] == 400
    assert all(per[t]["dice"] == 0.0 for t in tumour)
    pooled = result["pooled"]
    tp = sum(r["gt_pixels"] for r in result["per_image"] if r["file_name"] not in tumour)
    p = tp + 400
    g = sum(r["gt_pixels"] for r in result["per_image"])
    assert pooled["dice"] == pytest.approx(2 * tp / (p + g))


def test_report_text(valid_split, capsys):
    src, masks = valid_split
    assert main(["evaluate", str(masks), str(src)]) == 0
    out = capsys.readouterr().out
    assert "Pooled over all pixels: Dice 1.0000" in out
    assert "False-positive images (tumour predicted, none annotated): 0" in out
    assert "whole tumour" in out


def test_a_stack_with_one_slice_per_image(tmp_path, capsys):
    from PIL import Image

    src = tmp_path / "export"
    src.mkdir()
    images, anns = [], []
    for i, name in enumerate(["s10.jpg", "s2.jpg", "s1.jpg"]):
        Image.fromarray(np.full((16, 16), 50, np.uint8)).save(src / name)
        images.append({"id": i + 1, "file_name": name, "width": 16, "height": 16})
        if name != "s2.jpg":
            x = 2 + i
            anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1,
                         "segmentation": [[x, 2, x + 6, 2, x + 6, 8, x, 8]]})
    (src / "_annotations.coco.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "t"}]}))
    masks = tmp_path / "masks"
    assert main(["coco2mask", str(src), "-o", str(masks), "-q"]) == 0
    # Slices in the folder's natural order: s1, s2, s10.
    stack = np.stack([tifffile.imread(masks / f"s{i}.tif") for i in (1, 2, 10)])
    tifffile.imwrite(tmp_path / "pred.tif", stack, metadata={"axes": "ZYX"})
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "pred.tif"), str(src), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pooled"]["dice"] == 1.0
    tifffile.imwrite(tmp_path / "reversed.tif", stack[::-1], metadata={"axes": "ZYX"})
    assert evaluate_coco(tmp_path / "reversed.tif", src)["pooled"]["dice"] < 1.0


def test_coco_prediction_against_coco_truth(valid_split, tmp_path):
    src, masks = valid_split
    assert main(["mask2coco", str(masks), "-o", str(tmp_path / "pred.json"), "--images", str(src)]) == 0
    result = evaluate_coco(tmp_path / "pred.json", src)
    assert result["pooled"]["dice"] == 1.0 and result["false_positive_images"] == []


def test_missing_predictions_are_one_line(valid_split, tmp_path, capsys):
    src, masks = valid_split
    pred = tmp_path / "pred"
    pred.mkdir()
    for f in sorted(masks.glob("*.tif"))[:5]:
        tifffile.imwrite(pred / f.name, tifffile.imread(f))
    assert main(["evaluate", str(pred), str(src)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no predicted mask for 196 of 201 images" in err


@pytest.fixture
def brats_like(tmp_path):
    """A multi-label ground truth (1 necrosis, 2 oedema, 4 enhancing) and a binary prediction
    that finds the whole tumour exactly."""
    gt = np.zeros((6, 20, 20), np.uint8)
    gt[1:5, 4:16, 4:16] = 2
    gt[2:4, 7:13, 7:13] = 4
    gt[2:4, 9:11, 9:11] = 1
    pred = (gt > 0).astype(np.uint8)
    for name, arr in (("gt", gt), ("pred", pred)):
        nib.save(nib.Nifti1Image(arr.transpose(2, 1, 0).copy(), np.eye(4)), tmp_path / f"{name}_seg.nii.gz")
    return tmp_path / "pred_seg.nii.gz", tmp_path / "gt_seg.nii.gz", gt


def test_multi_label_truth_vs_binary_prediction_is_the_whole_tumour(brats_like, capsys):
    pred, gt, _ = brats_like
    assert main(["evaluate", str(pred), str(gt), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dice"] == 1.0
    assert "whole tumour" in result["compared"] and "1, 2, 4" in result["compared"]
    assert "per_label" not in result  # label 1 of a binary mask is not the necrosis


def test_label_option_picks_a_truth_label(brats_like, capsys):
    pred, gt, truth = brats_like
    assert main(["evaluate", str(pred), str(gt), "--label", "4", "--label", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    core = np.isin(truth, [1, 4]).sum()
    assert result["dice"] == pytest.approx(2 * core / (core + (truth > 0).sum()))
    assert "GT label(s) 4, 1" in result["compared"]
    assert main(["evaluate", str(pred), str(gt), "--label", "4"]) == 0
    assert "Compared: PRED > 0 vs GT label(s) 4" in capsys.readouterr().out
