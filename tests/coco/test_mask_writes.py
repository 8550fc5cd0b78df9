"""How coco_to_masks writes its masks (issue 15, "speed back"): tifffile's own bytes, each
mask written once into the run's staging folder (no temporary file and rename per mask),
committed whole."""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pytest
import tifffile

from napari_tumorseg.coco import to_masks
from napari_tumorseg.coco.to_masks import convert_coco_to_masks, write_mask


def _tifffile_bytes(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, mask, photometric="minisblack", metadata=None, rowsperstrip=mask.shape[0])
    return buffer.getvalue()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32])
@pytest.mark.parametrize("shape", [(640, 640), (1, 7), (257, 31)])
@pytest.mark.parametrize("atomic", [True, False])
def test_uncompressed_masks_are_byte_for_byte_tifffiles(tmp_path, dtype, shape, atomic):
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 3, shape).astype(dtype) * np.iinfo(dtype).max // 2
    write_mask(tmp_path / "m.tif", mask, atomic=atomic)
    assert (tmp_path / "m.tif").read_bytes() == _tifffile_bytes(mask)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "m.tif"), mask)


def test_a_non_contiguous_mask_is_written_as_its_values(tmp_path):
    mask = (np.arange(64 * 48).reshape(64, 48) % 5 == 0).astype(np.uint8)[:, ::2] * 255
    write_mask(tmp_path / "m.tif", mask)
    assert (tmp_path / "m.tif").read_bytes() == _tifffile_bytes(np.ascontiguousarray(mask))


def test_a_failed_staged_write_leaves_no_partial_file(tmp_path, monkeypatch):
    # The disk fills after the TIFF header went out: the half-written mask is removed, so a
    # staging folder only ever holds complete masks (a cancelled run commits what it holds).
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    write_mask(tmp_path / "warm.tif", np.zeros((4, 4), np.uint8))  # tifffile's framing, cached
    monkeypatch.setattr(to_masks.np, "ascontiguousarray", full_disk)
    with pytest.raises(OSError):
        write_mask(tmp_path / "m.tif", np.zeros((4, 4), np.uint8), atomic=False)
    assert sorted(os.listdir(tmp_path)) == ["warm.tif"]


def test_conversion_writes_each_mask_once_without_a_temporary_file(shared_data, tmp_path, monkeypatch):
    src = tmp_path / "valid"
    shutil.copytree(shared_data / "coco_ravirawal" / "valid", src)
    reference = convert_coco_to_masks(src, tmp_path / "reference")

    def no_temporary(*args, **kwargs):
        raise AssertionError("a temporary file per mask")

    monkeypatch.setattr(to_masks, "atomic_path", no_temporary)
    report = convert_coco_to_masks(src, tmp_path / "masks")
    assert len(report.written) == len(reference.written) == 201
    for a, b in zip(sorted(reference.written), sorted(report.written)):
        assert a.read_bytes() == b.read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # staging folder gone
    assert sorted(os.listdir(tmp_path / "masks")) == sorted(p.name for p in report.written)
