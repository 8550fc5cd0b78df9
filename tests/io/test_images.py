"""TIFF / JPG / PNG slices and stacks, folders of slices, and the LGG kaggle_3m layout."""

from __future__ import annotations

import shutil

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_tumorseg.errors import ReadError, WriteError
from napari_tumorseg.export.tiff import write_tiff_slices, write_tiff_stack
from napari_tumorseg.io.images import LGG_CHANNELS, natural_key, read_image_path

LGG_PATIENT = "TCGA_CS_4941_19960909"


@pytest.fixture(scope="module")
def lgg(shared_data):
    return shared_data / "lgg_kaggle3m" / LGG_PATIENT


def test_lgg_single_file_pairs_with_its_mask(lgg):
    for opened in (lgg / f"{LGG_PATIENT}_12.tif", lgg / f"{LGG_PATIENT}_12_mask.tif"):
        image, mask = read_image_path(opened)
        raw = tifffile.imread(lgg / f"{LGG_PATIENT}_12.tif")
        raw_mask = tifffile.imread(lgg / f"{LGG_PATIENT}_12_mask.tif")
        assert image.kind == "image" and image.channel_names == LGG_CHANNELS
        assert image.data.shape == (3, 1, 256, 256)
        np.testing.assert_array_equal(image.data[:, 0], np.moveaxis(raw, -1, 0))
        assert mask.kind == "labels" and mask.data.shape == (1, 256, 256)
        np.testing.assert_array_equal(mask.data[0], (raw_mask == 255).astype(np.uint8))
        assert image.spacing == mask.spacing == (1.0, 1.0, 1.0)


def test_lgg_patient_folder_is_one_case(lgg):
    image, mask = read_image_path(lgg)
    n = len([p for p in lgg.iterdir() if not p.stem.endswith("_mask")])
    assert image.data.shape == (3, n, 256, 256)
    assert image.channel_names == ["pre-contrast", "FLAIR", "post-contrast"]
    assert mask.data.shape == (n, 256, 256) and mask.data.dtype == np.uint8
    assert set(np.unique(mask.data)) == {0, 1}
    # Slice z is file N = z + 1 (natural order, not 1, 10, 11, ...), image and mask alike.
    for z in (0, 1, 9, n - 1):
        raw = tifffile.imread(lgg / f"{LGG_PATIENT}_{z + 1}.tif")
        raw_mask = tifffile.imread(lgg / f"{LGG_PATIENT}_{z + 1}_mask.tif")
        np.testing.assert_array_equal(image.data[:, z], np.moveaxis(raw, -1, 0))
        np.testing.assert_array_equal(mask.data[z], raw_mask // 255)
    # the FLAIR abnormality is brighter on FLAIR than the rest of the brain
    flair = image.data[1].astype(float)
    brain = flair > 10
    assert flair[mask.data == 1].mean() > flair[brain & (mask.data == 0)].mean()


def test_coco_jpeg_is_one_gray_slice(shared_data):
    path = sorted((shared_data / "coco_ravirawal" / "train").glob("*.jpg"))[0]
    (vol,) = read_image_path(path)
    assert vol.data.shape == (1, 640, 640) and vol.kind == "image" and not vol.has_channels
    np.testing.assert_array_equal(vol.data[0], iio.imread(path)[..., 0])


def test_true_colour_png_keeps_channels(lgg, tmp_path):
    rgb = tifffile.imread(lgg / f"{LGG_PATIENT}_12.tif")
    iio.imwrite(tmp_path / "colour.png", rgb)
    (vol,) = read_image_path(tmp_path / "colour.png")
    assert vol.channel_names == ["R", "G", "B"] and vol.data.shape == (3, 1, 256, 256)
    np.testing.assert_array_equal(vol.data[:, 0], np.moveaxis(rgb, -1, 0))


def test_folder_of_slices_sorted_by_number(lgg, tmp_path):
    image, _ = read_image_path(lgg)
    flair = image.data[1, :12]
    # Names whose plain string order (1, 10, 11, 12, 2, ...) differs from numeric order.
    for z in range(12):
        tifffile.imwrite(tmp_path / f"slice_{z + 1}.tif", flair[z])
    (stack,) = read_image_path(tmp_path)
    assert sorted([f"slice_{i}.tif" for i in range(1, 13)]) != [f"slice_{i}.tif" for i in range(1, 13)]
    np.testing.assert_array_equal(stack.data, flair)
    assert natural_key("a_2.tif") < natural_key("a_10.tif")


def test_folder_with_mixed_sizes_is_refused(shared_data, lgg, tmp_path):
    shutil.copy(lgg / f"{LGG_PATIENT}_1.tif", tmp_path / "a_1.tif")
    jpg = sorted((shared_data / "coco_ravirawal" / "train").glob("*.jpg"))[0]
    shutil.copy(jpg, tmp_path / "a_2.jpg")
    with pytest.raises(ReadError, match="one size"):
        read_image_path(tmp_path)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16])
def test_tiff_stack_round_trip_keeps_spacing(lgg, tmp_path, dtype):
    image, mask = read_image_path(lgg)
    data = image.data[1].astype(dtype) - (100 if dtype == np.int16 else 0)
    out = write_tiff_stack(data, tmp_path / "flair.tif", spacing=(5.0, 0.8, 0.75))
    (back,) = read_image_path(out)
    np.testing.assert_array_equal(back.data, data)
    np.testing.assert_allclose(back.spacing, (5.0, 0.8, 0.75), rtol=1e-6)
    with pytest.raises(WriteError, match="exists"):
        write_tiff_stack(data, out)


def test_multichannel_stack_round_trip(lgg, tmp_path):
    image, _ = read_image_path(lgg)
    out = write_tiff_stack(image.data, tmp_path / "case.tif", spacing=(3.0, 1.0, 1.0))
    (back,) = read_image_path(out)
    assert back.data.shape == image.data.shape
    np.testing.assert_array_equal(back.data, image.data)
    assert back.spacing == (3.0, 1.0, 1.0)


def test_imagej_micron_spacing_is_converted(lgg, tmp_path):
    plane = tifffile.imread(lgg / f"{LGG_PATIENT}_12_mask.tif")
    stack = np.stack([plane, plane])
    tifffile.imwrite(tmp_path / "roi_mask.tif", stack, imagej=True, resolution=(1 / 500.0, 1 / 500.0),
                     metadata={"spacing": 2000.0, "unit": "micron", "axes": "ZYX"})
    (vol,) = read_image_path(tmp_path / "roi_mask.tif")
    np.testing.assert_allclose(vol.spacing, (2.0, 0.5, 0.5), rtol=1e-6)
    assert vol.kind == "labels"  # "mask" in the name, values 0/255 -> 0/1
    assert set(np.unique(vol.data)) == {0, 1}


def test_dpi_is_not_a_voxel_size(lgg, tmp_path):
    plane = tifffile.imread(lgg / f"{LGG_PATIENT}_12.tif")[..., 1]
    tifffile.imwrite(tmp_path / "printed.tif", plane, resolution=(72, 72), resolutionunit="INCH")
    (vol,) = read_image_path(tmp_path / "printed.tif")
    assert vol.spacing == (1.0, 1.0, 1.0)


def test_slices_writer_refuses_before_writing(lgg, tmp_path):
    _, mask = read_image_path(lgg)
    paths = write_tiff_slices(mask.data, tmp_path / "out", "case")
    assert len(paths) == mask.data.shape[0] and paths[0].name == "case_001.tif"
    (back,) = read_image_path(tmp_path / "out")  # case_001.tif ... read back in order
    np.testing.assert_array_equal(back.data, mask.data)
    paths[5].unlink()
    with pytest.raises(WriteError, match="exists"):
        write_tiff_slices(mask.data, tmp_path / "out", "case")
    assert not paths[5].exists()  # nothing written by the refused call


def test_unreadable_image_is_a_read_error(tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 20)
    with pytest.raises(ReadError, match="broken.tif"):
        read_image_path(bad)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReadError, match="no TIFF"):
        read_image_path(empty)
