"""read_path / describe / combine_channels dispatch over every input kind, on real data."""

from __future__ import annotations

import numpy as np
import pytest

from napari_tumorseg.errors import ReadError, TumorSegError
from napari_tumorseg.io.readers import INFO_KEYS, can_read, combine_channels, describe, layer_data, read_path

BRATS12 = ["FLAIR", "T1", "T1C", "T2"]


def _brats12(shared_data, seq):
    return shared_data / "brats2012_hg0015" / f"BRATS_HG0015_{seq}.nii.gz"


def test_describe_dicom_folder_from_headers(shared_data):
    rows = describe(shared_data / "dicom_brainix")
    assert all(tuple(r) == INFO_KEYS for r in rows)
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {"sT2W/FLAIR", "sT2/TSE/T", "FLAIR_ROI"}
    flair, roi = by_name["sT2W/FLAIR"], by_name["FLAIR_ROI"]
    assert flair["shape"] == [22, 288, 288] and flair["kind"] == "image" and flair["modality"] == "MR"
    assert flair["n_files"] == 22 and flair["source"].endswith("FLAIR")
    np.testing.assert_allclose(flair["spacing"][1:], [0.79861110448837] * 2)
    assert roi["kind"] == "labels" and roi["shape"] == flair["shape"]
    assert by_name["sT2/TSE/T"]["shape"] == [22, 512, 512]


def test_read_path_series_matches_describe(shared_data):
    rows = describe(shared_data / "dicom_brainix")
    for i, row in enumerate(rows):
        (vol,) = read_path(shared_data / "dicom_brainix", series=i)
        assert vol.name == row["name"] and vol.kind == row["kind"]
        assert list(vol.spatial_shape) == row["shape"]
        np.testing.assert_allclose(vol.spacing, row["spacing"])
    with pytest.raises(ReadError, match="series 3 does not exist"):
        read_path(shared_data / "dicom_brainix", series=3)


def test_describe_nifti_and_lgg(shared_data):
    (row,) = describe(_brats12(shared_data, "truth"))
    assert row == {
        "name": "BRATS_HG0015_truth",
        "kind": "labels",
        "shape": [176, 216, 160],
        "spacing": [1.0, 1.0, 1.0],
        "modality": "",
        "n_files": 1,
        "source": str(_brats12(shared_data, "truth")),
        "channels": 1,
    }
    lgg = shared_data / "lgg_kaggle3m" / "TCGA_CS_4941_19960909"
    image, mask = describe(lgg)
    assert (image["kind"], mask["kind"]) == ("image", "labels")
    assert (image["channels"], mask["channels"]) == (3, 1)  # pre-contrast, FLAIR, post-contrast
    assert image["shape"] == mask["shape"] == [23, 256, 256]
    assert image["n_files"] == mask["n_files"] == 23
    # the cheap description agrees with a full read
    vols = read_path(lgg)
    assert [list(v.spatial_shape) for v in vols] == [image["shape"], mask["shape"]]


def test_folder_of_cases(shared_data):
    rows = describe(shared_data / "lgg_kaggle3m")
    assert [r["kind"] for r in rows] == ["image", "labels", "image", "labels"]
    rows = describe(shared_data / "brats2013_deepmedic")  # split/case/*.nii.gz
    assert len(rows) == 16 and sum(r["kind"] == "labels" for r in rows) == 8


def test_combine_brats2012_channels(shared_data):
    vols = [read_path(_brats12(shared_data, s))[0] for s in BRATS12]
    case = combine_channels(vols)
    assert case.data.shape == (4, 176, 216, 160)
    assert case.channel_names == ["FLAIR", "T1", "T1c", "T2"]
    assert case.name == "BRATS_HG0015"
    for c, v in enumerate(vols):
        np.testing.assert_array_equal(case.data[c], v.data)
    np.testing.assert_array_equal(case.affine, vols[0].affine)
    data, kwargs, kind = layer_data([case])[0]
    assert kind == "image" and kwargs["channel_axis"] == 0 and len(kwargs["name"]) == 4


def test_combine_refuses_different_grids(shared_data):
    flair12 = read_path(_brats12(shared_data, "FLAIR"))[0]
    flair13 = read_path(shared_data / "brats2013_deepmedic" / "validation" / "brats_2013_pat0003_1"
                        / "Flair_subtrMeanDivStd.nii.gz")[0]
    with pytest.raises(TumorSegError, match="Flair_subtrMeanDivStd.*155x240x240.*BRATS_HG0015_FLAIR.*176x216x160"):
        combine_channels([flair12, flair13])

    t2, flair = read_path(shared_data / "dicom_brainix", series=0)[0], read_path(shared_data / "dicom_brainix", series=1)[0]
    with pytest.raises(TumorSegError, match="resampling is not supported"):
        combine_channels([flair, t2])

    shifted = read_path(_brats12(shared_data, "T1"))[0]
    shifted.affine = shifted.affine.copy()
    shifted.affine[:3, 3] += [0.0, 0.0, 3.0]
    with pytest.raises(TumorSegError, match="position or orientation.*3.00 mm"):
        combine_channels([flair12, shifted])

    truth = read_path(_brats12(shared_data, "truth"))[0]
    with pytest.raises(TumorSegError, match="label map"):
        combine_channels([flair12, truth])


def test_bad_inputs(shared_data, tmp_path):
    json_file = tmp_path / "settings.json"  # JSON, but not COCO: not ours
    json_file.write_text('{"images": "none", "theme": "dark"}')
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    for path, why in [(json_file, "unsupported"), (text, "unsupported"), (empty, "no readable"),
                      (tmp_path / "missing.nii.gz", "no such")]:
        assert not can_read(path)
        with pytest.raises(ReadError, match=why) as info:
            read_path(path)
        assert "\n" not in str(info.value)
        with pytest.raises(ReadError):
            describe(path)


def test_extensionless_dicom_file_is_recognised(shared_data, tmp_path):
    src = sorted((shared_data / "dicom_brainix" / "FLAIR").glob("*.dcm"))[0]
    plain = tmp_path / "IM0001"
    plain.write_bytes(src.read_bytes())
    assert can_read(plain)
    (vol,) = read_path(plain)
    assert vol.spatial_shape[1:] == (288, 288)


@pytest.mark.parametrize("name", ["x.dcm", "scan.IMA", "slice.dicom"])
@pytest.mark.parametrize("content", [b"hello, this is a text file\n", b"", b"\x89PNG\r\n\x1a\n" + b"\0" * 300])
def test_a_dicom_name_on_something_else_is_not_a_dicom_file(tmp_path, name, content):
    """Not "unsupported file type '.dcm'": the name says DICOM, the content does not."""
    path = tmp_path / name
    path.write_bytes(content)
    assert can_read(path)  # the name makes it ours to explain (napari shows our one line)
    for call in (read_path, describe):
        with pytest.raises(ReadError) as info:
            call(path)
        assert str(info.value) == f"{name}: not a DICOM file"


def test_a_dicom_file_without_its_preamble_still_reads(pydicom_test_files, tmp_path):
    """Files written before DICOM Part 10 (no 128-byte preamble, no "DICM") are DICOM all the same."""
    import pydicom

    from napari_tumorseg.io.dicom import is_dicom_file, looks_like_dicom

    ds = pydicom.dcmread(pydicom_test_files / "MR_small.dcm")
    pixels = np.asarray(ds.pixel_array)
    del ds.file_meta
    ds.preamble = None
    bare = tmp_path / "bare.dcm"
    pydicom.dcmwrite(bare, ds, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert bare.read_bytes()[:2] == b"\x08\x00"  # the dataset's first element, nothing before it
    assert not is_dicom_file(bare) and looks_like_dicom(bare)
    (vol,) = read_path(bare)
    np.testing.assert_array_equal(vol.data[0], pixels)
