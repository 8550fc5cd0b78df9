"""Outputs of several files are all-or-nothing: a full disk mid-way leaves no partial result.

coco2mask (one mask per image), ``predict --probabilities`` (labels + probability map) and
tiff-slices (one TIFF per slice) used to leave what they had written so far, and coco2mask
printed a traceback. A full disk is simulated by a writer that raises ENOSPC on its
third call.
"""

from __future__ import annotations

import errno

import nibabel as nib
import numpy as np
import pytest
import tifffile

from tests.hostile.conftest import assert_one_line_error, snapshot
from tests.hostile.test_hostile_coco import SQUARE, make_export


def full_disk_after(n_ok: int, real):
    calls = {"n": 0}

    def writer(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n_ok:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    return writer


def _no_staging_left(folder) -> bool:
    return not [p for p in folder.rglob(".*") if p.name.endswith(".partial") or p.name.startswith(".")]


def _coco_with_images(folder, n=6):
    from PIL import Image
    import json

    folder.mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        Image.fromarray(np.full((32, 32), 80, np.uint8)).save(folder / f"img{i}.jpg")
        images.append({"id": i + 1, "file_name": f"img{i}.jpg", "width": 32, "height": 32})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "segmentation": [SQUARE]})
    (folder / "_annotations.coco.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "tumor"}]}))
    return folder


@pytest.mark.parametrize("workers", ["1", "3"])
def test_coco2mask_on_a_full_disk_writes_nothing(tmp_path, cli, monkeypatch, workers):
    from napari_tumorseg.coco import to_masks

    src = _coco_with_images(tmp_path / "coco")
    monkeypatch.setattr(to_masks, "write_mask", full_disk_after(2, to_masks.write_mask))
    out = tmp_path / "masks"
    code, _, err = cli("coco2mask", src, "-o", out, "--workers", workers)
    assert_one_line_error(code, err, "No space left on device", "masks")
    assert not out.exists()
    assert _no_staging_left(tmp_path)


def test_coco2mask_full_disk_keeps_the_earlier_masks_untouched(tmp_path, cli, monkeypatch):
    from napari_tumorseg.coco import to_masks

    src = _coco_with_images(tmp_path / "coco")
    out = tmp_path / "masks"
    out.mkdir()
    for i in range(6):
        tifffile.imwrite(out / f"img{i}.tif", np.full((32, 32), i, np.uint8))
    before = snapshot(out)
    monkeypatch.setattr(to_masks, "write_mask", full_disk_after(3, to_masks.write_mask))
    code, _, err = cli("coco2mask", src, "-o", out, "--overwrite")
    assert_one_line_error(code, err, "No space left on device")
    assert snapshot(out) == before
    assert _no_staging_left(tmp_path)


def test_coco2mask_cancel_keeps_finished_masks_as_complete_files(tmp_path):
    from napari_tumorseg.coco.to_masks import coco_to_masks

    src = _coco_with_images(tmp_path / "coco")
    gen = coco_to_masks(src, tmp_path / "masks")
    next(gen), next(gen)
    gen.close()
    written = sorted(p.name for p in (tmp_path / "masks").iterdir())
    assert written == ["img0.tif", "img1.tif"]
    assert _no_staging_left(tmp_path)


def _flair(tmp_path):
    src = tmp_path / "flair.nii.gz"
    data = np.random.default_rng(0).random((16, 16, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), src)
    return src


def test_predict_with_probabilities_on_a_full_disk(tmp_path, cli, monkeypatch, unet_checkpoint):
    import napari_tumorseg.export as export

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export, "export_probabilities", no_space)
    out = tmp_path / "out" / "pred.nii.gz"
    code, stdout, err = cli("predict", unet_checkpoint, _flair(tmp_path), "-o", out, "--probabilities", "--quiet")
    assert_one_line_error(code, err, "No space left on device")
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True
    assert "wrote" not in stdout


def test_predict_full_disk_leaves_earlier_results_in_place(tmp_path, cli, monkeypatch, unet_checkpoint):
    import napari_tumorseg.export as export

    src = _flair(tmp_path)
    out = tmp_path / "pred.nii.gz"
    assert cli("predict", unet_checkpoint, src, "-o", out, "--probabilities", "--quiet")[0] == 0
    before = snapshot(tmp_path)
    monkeypatch.setattr(export, "export_probabilities",
                        full_disk_after(0, export.export_probabilities))
    code, _, err = cli("predict", unet_checkpoint, src, "-o", out, "--probabilities", "--quiet", "--overwrite")
    assert_one_line_error(code, err, "No space left on device")
    assert snapshot(tmp_path) == before


def test_predict_to_tiff_slices_on_a_full_disk(tmp_path, cli, monkeypatch, unet_checkpoint):
    monkeypatch.setattr(tifffile, "imwrite", full_disk_after(2, tifffile.imwrite))
    out = tmp_path / "slices"
    code, _, err = cli("predict", unet_checkpoint, _flair(tmp_path), "-o", out, "--format", "tiff-slices",
                       "--quiet")
    assert_one_line_error(code, err, "No space left on device")
    assert not out.exists() or not list(out.iterdir())
    assert _no_staging_left(tmp_path)


def test_tiff_slices_export_core_is_all_or_nothing(tmp_path, monkeypatch):
    """The Correct dock exports through export_labels: the same guarantee there."""
    from napari_tumorseg.errors import WriteError
    from napari_tumorseg.export import export_labels

    labels = np.zeros((5, 8, 8), np.uint8)
    labels[2, 2:5, 2:5] = 1
    out = tmp_path / "slices"
    out.mkdir()
    (out / "notes.txt").write_text("the user's file")
    monkeypatch.setattr(tifffile, "imwrite", full_disk_after(3, tifffile.imwrite))
    with pytest.raises(WriteError, match="No space left on device"):
        export_labels(labels, "tiff-slices", out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    monkeypatch.undo()
    written = export_labels(labels, "tiff-slices", out)
    assert len(written) == 5 and all(p.exists() for p in written)
    assert _no_staging_left(tmp_path)
