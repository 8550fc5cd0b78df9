"""Hostile volumes: broken geometry, NaN voxels, damaged DICOM, colour-stained slice folders.

Degenerate geometry crashed convert/predict inside nibabel or opened with voxel size 0;
NaN/Inf voxels blanked the probability map on their slices ("0 labelled voxels", exit 0);
a truncated DICOM slice became a gap warning that named no file; a folder of grey slices
with a few colour ones silently became a 3-channel stack.
"""

from __future__ import annotations

import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from tests.hostile.conftest import assert_one_line_error, snapshot

PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "PID-4711"


# ----------------------------------------------------------------------------- builders


def nifti(path: Path, data=None, srow=None, dims=None, pixdim=None) -> Path:
    """A small NIfTI; the header fields are then patched byte for byte, as a broken writer
    would leave them (nibabel itself refuses to write most of these)."""
    data = np.random.default_rng(0).random((12, 12, 5)).astype(np.float32) if data is None else data
    plain = path.with_suffix("") if path.suffix == ".gz" else path
    nib.save(nib.Nifti1Image(data, np.eye(4)), plain)
    raw = bytearray(plain.read_bytes())
    if srow is not None:
        struct.pack_into("<hh", raw, 252, 0, 1)  # qform_code 0, sform_code 1
        struct.pack_into("<12f", raw, 280, *np.asarray(srow, np.float64).ravel())
    if dims is not None:
        struct.pack_into(f"<{len(dims)}h", raw, 40, *dims)
    if pixdim is not None:
        struct.pack_into("<hh", raw, 252, 0, 0)
        struct.pack_into("<3f", raw, 80, *pixdim)
    plain.write_bytes(bytes(raw))
    return plain


def dicom_series(folder: Path, n: int = 4, pixels=None, **attrs) -> Path:
    """A minimal MR series as a research export leaves it: no birth date, sex or study ID."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"IM{k:04d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.SeriesDescription = "MR", "FLAIR"
        ds.PatientName, ds.PatientID = PATIENT_NAME, PATIENT_ID
        ds.Rows = ds.Columns = 16
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelSpacing = [1, 1]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, float(k)]
        ds.InstanceNumber = k + 1
        for key, value in attrs.items():
            setattr(ds, key, value)
        plane = pixels[k] if pixels is not None else (np.arange(256).reshape(16, 16) + 7 * k)
        ds.PixelData = np.asarray(plane, np.uint16).tobytes()
        ds.save_as(folder / f"IM{k:04d}.dcm", enforce_file_format=True)
    return folder


# ----------------------------------------------------------------------------- geometry

BROKEN_NIFTI = {
    "zero x column": dict(srow=[[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]),
    "all zero": dict(srow=[[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]),
    "nan affine": dict(srow=[[np.nan] * 4, [0, 1, 0, 0], [0, 0, 1, 0]]),
    "inf affine": dict(srow=[[1, 0, 0, np.inf], [0, 1, 0, 0], [0, 0, 1, 0]]),
    "parallel axes": dict(srow=[[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]]),
    "singular": dict(srow=[[1, 2, 3, 0], [2, 4, 6, 0], [0, 0, 1, 0]]),
    "tiny voxels": dict(srow=[[1e-9, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]),
    "zero dim": dict(dims=[3, 12, 0, 5]),
    "negative dim": dict(dims=[3, 12, -12, 5]),
}


@pytest.mark.parametrize("command", ["info", "convert"])
@pytest.mark.parametrize("case", list(BROKEN_NIFTI.values()), ids=list(BROKEN_NIFTI))
def test_broken_nifti_geometry(tmp_path, cli, command, case):
    path = nifti(tmp_path / "broken_flair.nii", **case)
    argv = [command, path] + (["-o", tmp_path / "out.nii.gz"] if command == "convert" else [])
    code, out, err = cli(*argv)
    assert_one_line_error(code, err, "broken_flair.nii")
    assert not (tmp_path / "out.nii.gz").exists()


@pytest.mark.parametrize("command", ["info", "convert"])
@pytest.mark.parametrize("spacing", [[0, 0, 0], [float("nan"), 1, 1], [-1, 1, 1], [1, float("inf"), 1]],
                         ids=["zero", "nan", "negative", "inf"])
def test_broken_tiff_voxel_size(tmp_path, cli, command, spacing):
    import tifffile

    path = tmp_path / "stack_7.tif"
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint8), metadata={"axes": "ZYX", "spacing": spacing, "unit": "mm"})
    argv = [command, path] + (["-o", tmp_path / "out.nii.gz"] if command == "convert" else [])
    code, _, err = cli(*argv)
    assert_one_line_error(code, err, "stack_7.tif", "voxel size")
    assert not (tmp_path / "out.nii.gz").exists()


def test_zero_pixdim_without_affine_never_gives_scale_zero(tmp_path, cli):
    """Without an sform/qform nibabel falls back to pixdim; 0 there must not become a 0 mm voxel."""
    from napari_tumorseg.io.readers import read_path

    path = nifti(tmp_path / "nopix.nii", pixdim=[0, 0, 0])
    vol = read_path(path)[0]
    assert min(vol.spacing) > 0
    assert all(s > 0 for s in vol.layer_data()[1]["scale"])


BROKEN_DICOM = {
    "zero pixel spacing": dict(PixelSpacing=[0, 0]),
    "one zero pixel spacing": dict(PixelSpacing=[0, 1]),
    "negative pixel spacing": dict(PixelSpacing=[-1, 1]),
    "zero orientation": dict(ImageOrientationPatient=[0, 0, 0, 0, 0, 0]),
    "parallel orientation": dict(ImageOrientationPatient=[1, 0, 0, 1, 0, 0]),
    "zero row vector": dict(ImageOrientationPatient=[0, 0, 0, 0, 1, 0]),
}


@pytest.mark.parametrize("command", ["info", "convert"])
@pytest.mark.parametrize("attrs", list(BROKEN_DICOM.values()), ids=list(BROKEN_DICOM))
def test_broken_dicom_geometry(tmp_path, cli, command, attrs):
    folder = dicom_series(tmp_path / "series01", **attrs)
    argv = [command, folder] + (["-o", tmp_path / "out.nii.gz"] if command == "convert" else [])
    code, out, err = cli(*argv)
    line = assert_one_line_error(code, err, "series01")
    assert PATIENT_NAME not in line and PATIENT_ID not in line
    assert not (tmp_path / "out.nii.gz").exists()


def test_truncated_dicom_slice_is_named(tmp_path, cli):
    folder = dicom_series(tmp_path / "study", n=6)
    victim = folder / "IM0003.dcm"
    victim.write_bytes(victim.read_bytes()[:-200])
    code, out, err = cli("convert", folder, "-o", tmp_path / "out.nii.gz")
    assert code == 0, err
    lines = err.strip().splitlines()
    assert all(ln.startswith("tumorseg convert: warning:") for ln in lines), err
    named = [ln for ln in lines if "IM0003.dcm" in ln]
    assert len(named) == 1 and "truncated" in named[0]
    assert "Traceback" not in err and PATIENT_NAME not in err and PATIENT_ID not in err


# ----------------------------------------------------------------------------- slice folders


def _slices(folder: Path, n: int, colour: list[int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        a = np.full((16, 16, 3), 30 + 5 * i, np.uint8)
        if i in colour:
            a[2:6, 2:6] = (200, 20, 20)
        Image.fromarray(a).save(folder / f"slice_{i}.png")
    return folder


@pytest.mark.parametrize("colour", [[0], [3], [3, 7], [0, 9], [1, 2, 3]])
def test_a_few_colour_slices_open_as_grey_and_are_named(tmp_path, cli, colour):
    folder = _slices(tmp_path / "axial", 10, colour)
    code, out, err = cli("convert", folder, "-o", tmp_path / "axial.nii.gz")
    assert code == 0, err
    (line,) = err.strip().splitlines()
    assert "warning" in line and all(f"slice_{i}.png" in line for i in colour)
    assert f"{len(colour)} of 10 slices are not grey" in line
    assert nib.load(tmp_path / "axial.nii.gz").ndim == 3  # one channel


@pytest.mark.parametrize("colour", [list(range(10)), list(range(5, 10)), list(range(1, 10))])
def test_a_colour_stack_keeps_its_channels_and_info_shows_them(tmp_path, cli, colour):
    folder = _slices(tmp_path / "rgb", 10, colour)
    code, out, err = cli("info", folder, "--json")
    assert code == 0, err
    from napari_tumorseg.io.readers import read_path

    vol = read_path(folder)[0]
    assert vol.has_channels and vol.data.shape[0] == 3
    code, out, err = cli("info", folder)
    assert code == 0 and "3 channels" in out


# ----------------------------------------------------------------------------- NaN voxels


def _poisoned(kind: str, where: str) -> np.ndarray:
    data = np.random.default_rng(1).random((16, 16, 6)).astype(np.float32) * 100
    value = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[kind]
    if where == "one voxel":
        data[3, 4, 2] = value
    elif where == "one slice":
        data[:, :, 2] = value
    else:
        data[:] = value
    return data


@pytest.mark.parametrize("kind", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("where", ["one voxel", "one slice", "everywhere"])
def test_nan_voxels_are_refused_not_blanked(tmp_path, cli, unet_checkpoint, kind, where):
    data = _poisoned(kind, where)
    src = tmp_path / "flair_case7.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), src)
    out = tmp_path / "pred.nii.gz"
    code, stdout, err = cli("predict", unet_checkpoint, src, "-o", out, "--quiet", "--probabilities")
    n_bad = int((~np.isfinite(data)).sum())
    assert_one_line_error(code, err, f"{n_bad} voxels are NaN/Inf", "flair_case7.nii.gz")
    assert "labelled voxels" not in stdout
    assert list(tmp_path.glob("pred*")) == [] and list(tmp_path.glob(".pred*")) == []


def test_nan_voxels_in_a_float_tiff(tmp_path, cli, unet_checkpoint):
    import tifffile

    data = np.random.default_rng(2).random((4, 16, 16)).astype(np.float32)
    data[1, 5, 5] = np.nan
    tifffile.imwrite(tmp_path / "stack.tif", data)
    code, _, err = cli("predict", unet_checkpoint, tmp_path / "stack.tif", "-o", tmp_path / "p.tif", "--quiet")
    assert_one_line_error(code, err, "1 voxels are NaN/Inf", "stack.tif")


def test_nan_voxels_refused_by_the_core_the_gui_uses(unet_checkpoint):
    from napari_tumorseg.errors import TumorSegError
    from napari_tumorseg.inference.predict import load_predictor, predict_volume
    from napari_tumorseg.io.volume import Volume

    data = _poisoned("nan", "one slice").transpose(2, 1, 0).copy()
    vol = Volume(data=data, name="flair", source=["/scans/flair_case7.nii.gz"])
    with pytest.raises(TumorSegError, match="NaN/Inf in flair_case7.nii.gz"):
        list(predict_volume(load_predictor(unet_checkpoint), vol))
    with pytest.raises(TumorSegError, match="NaN/Inf in the input array"):
        list(predict_volume(load_predictor(unet_checkpoint), data))


# ----------------------------------------------------------------------------- checkpoints


def _tampered(src: Path, dst: Path, edit) -> Path:
    import torch

    ckpt = torch.load(src, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, dst)
    return dst


def _nan_first_weight(ckpt):
    key = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][key][0] = float("nan")


def _inf_last_weight(ckpt):
    key = [k for k, v in ckpt["state_dict"].items() if v.is_floating_point()][-1]
    ckpt["state_dict"][key].fill_(float("inf"))


def _huge_width(ckpt):
    ckpt["config"]["width"] = 100_000


def _huge_input(ckpt):
    ckpt["in_channels"] = 50_000_000


TAMPER = {
    "nan weight": (_nan_first_weight, "NaN/Inf"),
    "inf weight": (_inf_last_weight, "NaN/Inf"),
    "huge width": (_huge_width, "G parameters"),
    "huge input": (_huge_input, "G parameters"),
}


@pytest.mark.parametrize("edit, words", list(TAMPER.values()), ids=list(TAMPER))
def test_tampered_checkpoints_are_refused_at_load(tmp_path, cli, unet_checkpoint, edit, words):
    bad = _tampered(unet_checkpoint, tmp_path / "bad.pt", edit)
    src = tmp_path / "flair.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((16, 16, 3), np.float32), np.eye(4)), src)
    code, _, err = cli("predict", bad, src, "-o", tmp_path / "p.nii.gz", "--quiet")
    assert_one_line_error(code, err, "bad.pt", words)
    assert not (tmp_path / "p.nii.gz").exists()


def test_huge_config_is_refused_without_allocating(unet_checkpoint, tmp_path):
    """A width of 100000 would be ~10^14 parameters: only the shape-only count can refuse it."""
    import resource

    from napari_tumorseg.errors import TumorSegError
    from napari_tumorseg.models.checkpoint import load_checkpoint

    bad = _tampered(unet_checkpoint, tmp_path / "bad.pt", _huge_width)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(TumorSegError, match="refused before allocating"):
        load_checkpoint(bad)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 500


def test_pretrained_weights_with_nan_are_refused(tmp_path, unet_checkpoint):
    import torch

    from napari_tumorseg.errors import TumorSegError
    from napari_tumorseg.models import create_model
    from napari_tumorseg.models.checkpoint import load_pretrained

    state = torch.load(unet_checkpoint, weights_only=True)["state_dict"]
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key][0] = float("nan")
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(TumorSegError, match="NaN/Inf"):
        load_pretrained(create_model("unet", in_channels=1, out_channels=1, width=4), tmp_path / "w.pt")
