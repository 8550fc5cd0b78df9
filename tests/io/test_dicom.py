"""DICOM reader on real data: OsiriX BRAINIX (Philips MR) and pydicom's test files."""

from __future__ import annotations

import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut

from napari_tumorseg.errors import ReadError
from napari_tumorseg.io.dicom import (
    DicomWarning,
    is_dicom_file,
    load_dicom_series,
    read_dicom,
    scan_dicom,
)


@pytest.fixture(scope="module")
def brainix(shared_data) -> Path:
    return shared_data / "dicom_brainix"


@pytest.fixture(scope="module")
def dicomdirtests() -> Path:
    return Path(get_testdata_file("MR_small.dcm")).parent / "dicomdirtests"


def _load_one(path) -> tuple:
    series, notes = scan_dicom(path)
    assert len(series) == 1, [s.description for s in series]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DicomWarning)
        return series[0], load_dicom_series(series[0]), notes


def _normal(iop) -> np.ndarray:
    o = np.asarray(iop, float)
    return np.cross(o[:3], o[3:])


def _ras(lps) -> np.ndarray:
    return np.asarray(lps, float) * [-1, -1, 1]


# ---------------------------------------------------------------------------- BRAINIX


@pytest.mark.parametrize(
    "name, desc, rows, pixel",
    [("FLAIR", "sT2W/FLAIR", 288, 0.79861110448837), ("T2", "sT2/TSE/T", 512, 0.44921875),
     ("ROI", "FLAIR_ROI", 288, 0.798611)],
)
def test_brainix_series_geometry(brainix, name, desc, rows, pixel):
    s, vol, notes = _load_one(brainix / name)
    assert notes == [] and s.warnings == []
    assert s.description == desc == vol.name and s.modality == "MR" == vol.modality
    assert s.n_slices == 22 and s.shape == (22, rows, rows) == vol.data.shape
    # z from the positions (6 mm apart), not SliceThickness (5 mm)
    assert s.spacing[0] == pytest.approx(6.0, abs=1e-4)
    assert s.spacing[1:] == pytest.approx((pixel, pixel))
    assert vol.spacing == pytest.approx(s.spacing)
    assert len(s.files) == 22 and len(vol.source) == 22


def test_brainix_slices_sorted_along_normal_and_match_files(brainix):
    s, vol, _ = _load_one(brainix / "FLAIR")
    meta = vol.metadata["dicom"]
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in meta.slice_files]
    normal = _normal([float(v) for v in headers[0].ImageOrientationPatient])
    d = np.array([np.dot(np.asarray(h.ImagePositionPatient, float), normal) for h in headers])
    assert np.all(np.diff(d) > 5.9)
    # InstanceNumber 1 is the highest slice here: position order reverses it.
    assert headers[0].InstanceNumber == 22 and headers[-1].InstanceNumber == 1
    for z in (0, 7, 21):
        ds = pydicom.dcmread(vol.source[z])
        assert ds.SOPInstanceUID == meta.sop_instance_uids[z]
        np.testing.assert_array_equal(vol.data[z], ds.pixel_array)
        # The affine takes the voxel (z, 0, 0) to that file's position, in RAS.
        corner = vol.affine @ np.array([z, 0, 0, 1.0])
        np.testing.assert_allclose(corner[:3], _ras(ds.ImagePositionPatient), atol=1e-3)
        # ... and one pixel along x moves along the row cosine by the column spacing.
        step_x = vol.affine @ np.array([z, 0, 1, 1.0]) - corner
        row_cos = np.asarray(ds.ImageOrientationPatient[:3], float)
        np.testing.assert_allclose(step_x[:3], _ras(row_cos * float(ds.PixelSpacing[1])), atol=1e-6)


def test_brainix_roi_is_a_mask_on_the_flair_grid(brainix):
    flair_s, flair, _ = _load_one(brainix / "FLAIR")
    roi_s, roi, _ = _load_one(brainix / "ROI")
    assert roi_s.is_mask and not flair_s.is_mask
    assert roi.kind == "labels" and flair.kind == "image"
    assert roi.data.dtype == np.uint8 and set(np.unique(roi.data)) == {0, 1}
    assert roi.data.shape == flair.data.shape
    np.testing.assert_allclose(roi.affine, flair.affine, atol=1e-3)
    # the tumour lies in the bright FLAIR region
    assert flair.data[roi.data == 1].mean() > 2 * flair.data[flair.data > 0].mean()
    for key in ("frame_of_reference_uid", "study_uid"):
        assert getattr(roi.metadata["dicom"], key) == getattr(flair.metadata["dicom"], key)


def test_metadata_carries_what_a_seg_export_needs(brainix):
    _, vol, _ = _load_one(brainix / "FLAIR")
    m = vol.metadata["dicom"]
    first = pydicom.dcmread(vol.source[0], stop_before_pixels=True)
    assert m.study_uid == first.StudyInstanceUID
    assert m.series_uid == first.SeriesInstanceUID
    assert m.frame_of_reference_uid == first.FrameOfReferenceUID
    assert m.sop_class_uid == first.SOPClassUID
    assert len(m.sop_instance_uids) == 22 == len(set(m.sop_instance_uids)) == len(m.slice_files)
    assert m.series_number == 401 and m.modality == "MR" and m.frame_numbers is None
    # Nothing that identifies the patient is carried, and nothing identifying is printed.
    assert set(vars(m)) == {"study_uid", "series_uid", "frame_of_reference_uid", "sop_class_uid",
                            "sop_instance_uids", "slice_files", "frame_numbers", "modality",
                            "series_number", "series_description"}
    assert str(first.PatientName) not in {str(v) for v in vars(m).values()}
    assert first.StudyInstanceUID not in repr(m) and "dcm" not in repr(m)
    assert first.SeriesInstanceUID not in repr(_load_one(brainix / "FLAIR")[0])
    assert vol.metadata["warnings"] == []


def test_shuffled_random_names_load_identically(brainix, tmp_path):
    _, ref, _ = _load_one(brainix / "FLAIR")
    files = sorted((brainix / "FLAIR").glob("*.dcm"))
    rng = random.Random(7)
    rng.shuffle(files)
    for i, f in enumerate(files):
        name = "".join(rng.choice("abcdefghijklmnop") for _ in range(10)) + f"{i}"
        shutil.copy(f, tmp_path / name)  # no extension: found by the DICM preamble
    _, vol, _ = _load_one(tmp_path)
    np.testing.assert_array_equal(vol.data, ref.data)
    np.testing.assert_array_equal(vol.affine, ref.affine)
    assert vol.metadata["dicom"].sop_instance_uids == ref.metadata["dicom"].sop_instance_uids


def test_two_series_in_one_folder_are_never_mixed(brainix, tmp_path):
    uids = {}
    for name in ("FLAIR", "T2"):
        for f in (brainix / name).glob("*.dcm"):
            # same file names in both series: prefix keeps both copies
            shutil.copy(f, tmp_path / f"{name[0]}{f.name}")
            uids[pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID] = name
    series, notes = scan_dicom(tmp_path)
    assert [s.description for s in series] == ["sT2/TSE/T", "sT2W/FLAIR"]  # series 301, 401
    vols = read_dicom(tmp_path)
    assert [v.data.shape for v in vols] == [(22, 512, 512), (22, 288, 288)]
    for v, name in zip(vols, ("T2", "FLAIR")):
        assert {uids[u] for u in v.metadata["dicom"].sop_instance_uids} == {name}


def test_duplicate_copies_are_one_series_not_two_stacks(brainix, tmp_path):
    for sub in ("a", "b"):
        shutil.copytree(brainix / "FLAIR", tmp_path / sub)
    series, _ = scan_dicom(tmp_path)
    assert len(series) == 1 and series[0].n_slices == 22
    assert series[0].warnings == ["22 duplicate copies of the same instances ignored"]


def test_two_echoes_in_one_series_split_into_two_stacks(brainix, tmp_path):
    """A dual-echo acquisition stores both echoes, at the same positions, under one
    SeriesInstanceUID. Emulated from FLAIR: a second copy of each file as echo 2 with
    its own SOPInstanceUID and inverted intensities."""
    for f in sorted((brainix / "FLAIR").glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.save_as(tmp_path / f"e1_{f.name}")
        ds.EchoNumbers = 2
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.PixelData = (1100 - ds.pixel_array).astype(np.uint16).tobytes()
        ds.save_as(tmp_path / f"e2_{f.name}")
    series, _ = scan_dicom(tmp_path)
    assert [s.description for s in series] == ["sT2W/FLAIR [1/2]", "sT2W/FLAIR [2/2]"]
    assert all(s.n_slices == 22 and "2 frames per position" in s.warnings[0] for s in series)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DicomWarning)
        e1, e2 = (load_dicom_series(s) for s in series)
    _, ref, _ = _load_one(brainix / "FLAIR")
    np.testing.assert_array_equal(e1.data, ref.data)
    np.testing.assert_array_equal(e2.data, 1100 - ref.data.astype(np.int32))


def test_dropped_slice_gives_a_gap_warning(brainix, tmp_path):
    files = sorted((brainix / "FLAIR").glob("*.dcm"))
    for f in files[:10] + files[11:]:
        shutil.copy(f, tmp_path / f.name)
    series, _ = scan_dicom(tmp_path)
    s = series[0]
    assert s.n_slices == 21
    assert len(s.warnings) == 1 and "gap of 12.00 mm" in s.warnings[0]
    assert "1 slice(s) missing" in s.warnings[0]
    with pytest.warns(DicomWarning, match="gap of 12.00 mm"):
        vol = load_dicom_series(s)
    assert vol.metadata["warnings"] == s.warnings
    assert vol.spacing[0] == pytest.approx(6.0, abs=1e-4)  # the usual step, not the gap


def test_truncated_file_alone_is_a_read_error(brainix, tmp_path):
    data = (brainix / "FLAIR" / "IM-0001-0005.dcm").read_bytes()
    for cut, why in ((len(data) // 2, "truncated"), (3000, "truncated"),
                     (300, "incomplete header"), (60, "unreadable")):
        bad = tmp_path / f"cut{cut}.dcm"
        bad.write_bytes(data[:cut])
        with pytest.raises(ReadError) as err:
            read_dicom(bad)
        msg = str(err.value)
        assert "\n" not in msg and why in msg and msg.endswith(bad.name)


def test_truncated_pixel_data_found_at_load_is_a_read_error(tmp_path):
    """pydicom's MR_truncated.dcm lacks 62 bytes of pixels; if the scan's size check
    is bypassed the decoder's failure must still surface as a one-line ReadError."""
    good, _ = scan_dicom(get_testdata_file("MR_small.dcm"))
    with pytest.raises(ReadError, match="truncated"):
        scan_dicom(get_testdata_file("MR_truncated.dcm"))
    series = good[0]
    info = series._infos[series.files[0]]
    cut = tmp_path / "MR_small.dcm"
    cut.write_bytes(series.files[0].read_bytes()[:-400])  # shortened after the scan
    series._infos = {cut: info}
    info.path = cut
    series._slices[0].path = cut
    series.files = [cut]
    with pytest.raises(ReadError) as err:
        load_dicom_series(series)
    assert "MR_small.dcm" in str(err.value) and "\n" not in str(err.value)


def test_truncated_and_garbled_files_among_good_ones_are_notes(brainix, tmp_path):
    files = sorted((brainix / "FLAIR").glob("*.dcm"))
    for f in files:
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / files[3].name).write_bytes(files[3].read_bytes()[:100_000])  # cut in pixels
    (tmp_path / "garbage.dcm").write_bytes(b"\x00" * 128 + b"DICM" + bytes(range(256)) * 4)
    series, notes = scan_dicom(tmp_path)
    assert any(n.startswith("truncated") and n.endswith("IM-0001-0004.dcm") for n in notes)
    assert any("garbage.dcm" in n for n in notes)
    assert len(series) == 1 and series[0].n_slices == 21
    assert any("gap" in w for w in series[0].warnings)


def test_empty_or_missing_inputs_raise_read_error(tmp_path):
    with pytest.raises(ReadError, match="no DICOM files"):
        scan_dicom(tmp_path)
    (tmp_path / "notes.txt").write_text("not dicom")
    with pytest.raises(ReadError, match="no DICOM files"):
        read_dicom(tmp_path)
    with pytest.raises(ReadError, match="does not exist"):
        scan_dicom(tmp_path / "nope")


def test_non_image_objects_are_skipped_with_a_note(brainix, tmp_path):
    for name in ("test-SR.dcm", "liver_1frame.dcm", "rtplan.dcm"):
        shutil.copy(get_testdata_file(name), tmp_path / name)
    with pytest.raises(ReadError, match="no readable DICOM image series"):
        scan_dicom(tmp_path)
    shutil.copy(brainix / "T2" / "IM-0001-0001.dcm", tmp_path / "t2.dcm")
    series, notes = scan_dicom(tmp_path)
    assert len(series) == 1 and series[0].n_slices == 1
    joined = " | ".join(notes)
    assert "SR Storage" in joined and "Segmentation Storage" in joined and "RT Plan" in joined


def test_is_dicom_file(brainix, dicomdirtests, tmp_path):
    assert is_dicom_file(brainix / "ROI" / "IM-0001-0001.dcm")
    assert is_dicom_file(dicomdirtests / "DICOMDIR")
    (tmp_path / "x.dcm").write_bytes(b"hello")
    assert not is_dicom_file(tmp_path / "x.dcm")
    assert not is_dicom_file(tmp_path / "missing.dcm")


def test_progress_reports_every_slice(brainix):
    series, _ = scan_dicom(brainix / "T2")
    calls = []
    load_dicom_series(series[0], progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (22, 22) and len(calls) >= 22
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


# ----------------------------------------------------------- pydicom's real test files


def _summary(series):
    return [(s.description, s.n_slices, s.shape,
             tuple(p.name for p in s.files)) for s in series]


def test_dicomdir_and_folder_walk_agree(dicomdirtests):
    via_dir, dir_notes = scan_dicom(dicomdirtests / "DICOMDIR")
    via_walk, walk_notes = scan_dicom(dicomdirtests)
    assert _summary(via_dir) == _summary(via_walk)
    assert len(via_dir) == 24
    # TINY_ALPHA's 50 header-only CT objects (no pixels) are reported, not loaded
    assert any("without an image size" in n and "50 files" in n for n in walk_notes)


def test_dicomdirtests_ordering_gaps_and_splits(dicomdirtests):
    series, _ = scan_dicom(dicomdirtests / "DICOMDIR")
    by = {}
    for s in series:
        by.setdefault(s.description.split(" [")[0], []).append(s)
    # CT5N: 5 slices whose InstanceNumber runs against their position
    (ct,) = by["SmartScore - Gated 0.5 sec"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DicomWarning)  # a clean series warns nothing
        vol = load_dicom_series(ct)
    m = vol.metadata["dicom"]
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in m.slice_files]
    assert [h.InstanceNumber for h in headers] == [10, 9, 8, 7, 6]
    assert [float(h.ImagePositionPatient[2]) for h in headers] == pytest.approx(
        [-1.2375, 1.2625, 3.7625, 6.2625, 8.7625])
    assert ct.spacing[0] == pytest.approx(2.5)
    for z, f in enumerate(m.slice_files):
        ds = pydicom.dcmread(f)
        np.testing.assert_array_equal(vol.data[z], apply_modality_lut(ds.pixel_array, ds))
    # CT2: slice 18 is 202 mm away from 180-182: loads, with a gap warning
    (brain,) = by["Routine Brain"]
    assert brain.n_slices == 4 and any("gap of 202.50 mm" in w for w in brain.warnings)
    assert brain.spacing[0] == pytest.approx(1.25)
    # MR700: 7 radial projections, each its own orientation: never stacked together
    angio = by["ANGIO Projected from   C"]
    assert len(angio) == 7 and all(s.n_slices == 1 for s in angio)
    assert len({s.series_uid for s in angio}) == 1
    assert all("split into 7 stacks" in s.warnings[0] for s in angio)
    # MR1/MR2 localizers: one series per UID, the 3-plane pilots split by orientation
    assert len(by["FAST LOCALIZER"]) == 4
    assert sorted(s.n_slices for s in by["T/S/C RF FAST PILOT"]) == [1] * 6


def test_rescale_slope_intercept_matches_pydicom(tmp_path):
    ct = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(ct)
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)
    _, vol, _ = _load_one(ct)
    assert vol.data.dtype.kind == "i"
    np.testing.assert_array_equal(vol.data[0], apply_modality_lut(ds.pixel_array, ds))
    # a non-integral slope gives float32, still equal to pydicom's modality LUT
    mr = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    mr.RescaleSlope, mr.RescaleIntercept = "0.25", "-3.5"
    mr.save_as(tmp_path / "mr_scaled.dcm")
    _, vol, _ = _load_one(tmp_path / "mr_scaled.dcm")
    assert vol.data.dtype == np.float32
    np.testing.assert_allclose(vol.data[0], apply_modality_lut(mr.pixel_array, mr), rtol=1e-6)


@pytest.mark.parametrize("name", ["MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_RLE.dcm"])
def test_transfer_syntaxes_decode_like_pydicom(name):
    ref = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array
    _, vol, _ = _load_one(get_testdata_file(name))
    np.testing.assert_array_equal(vol.data[0], ref)


def test_multiframe_enhanced_mr_loads_like_the_single_frame_series(brainix, tmp_path):
    """BRAINIX FLAIR converted by highdicom into one multi-frame (legacy converted
    enhanced) MR file: per-frame PlanePositionSequence, shared PixelMeasuresSequence
    and PlaneOrientationSequence. Its frames are then put in a shuffled order, which
    only the plane positions can undo."""
    from highdicom import UID
    from highdicom.legacy import LegacyConvertedEnhancedMRImage

    sources = [pydicom.dcmread(f) for f in sorted((brainix / "FLAIR").glob("*.dcm"))]
    for ds in sources:  # values highdicom insists be valid and identical
        ds.PatientSex = "O"
        ds.SoftwareVersions = sources[0].SoftwareVersions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        enh = LegacyConvertedEnhancedMRImage(
            sources, series_instance_uid=UID(), series_number=900,
            sop_instance_uid=UID(), instance_number=1,
        )
    perm = np.random.default_rng(3).permutation(len(sources))
    frames = enh.pixel_array
    enh.PerFrameFunctionalGroupsSequence = [enh.PerFrameFunctionalGroupsSequence[i] for i in perm]
    enh.PixelData = np.ascontiguousarray(frames[perm]).tobytes()
    path = tmp_path / "flair_enhanced.dcm"
    enh.save_as(path)

    _, ref, _ = _load_one(brainix / "FLAIR")
    s, vol, _ = _load_one(path)
    assert s.files == [path] and s.n_slices == 22 and s.shape == (22, 288, 288)
    assert "PerFrameFunctionalGroupsSequence" in pydicom.dcmread(path, stop_before_pixels=True)
    np.testing.assert_array_equal(vol.data, ref.data)
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-4)
    assert vol.spacing == pytest.approx(ref.spacing)
    assert vol.source == [str(path)]
    frames_used = vol.metadata["dicom"].frame_numbers
    assert sorted(frames_used) == list(range(1, 23)) and frames_used != list(range(1, 23))


def test_deflated_explicit_vr_series_loads_like_its_source(brainix, tmp_path):
    """A valid Deflated Explicit VR Little Endian series (written by pydicom) loads with the
    same pixels and geometry as the uncompressed original."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    for f in sorted((brainix / "FLAIR").glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.save_as(tmp_path / f.name, enforce_file_format=True)
    assert pydicom.dcmread(next(tmp_path.glob("*.dcm"))).file_meta.TransferSyntaxUID.is_deflated
    (series,), notes = scan_dicom(tmp_path)
    assert notes == [] and series.n_slices == 22
    vol = load_dicom_series(series)
    _, ref, _ = _load_one(brainix / "FLAIR")
    np.testing.assert_array_equal(vol.data, ref.data)
    np.testing.assert_allclose(vol.affine, ref.affine)


def test_threaded_reads_of_a_large_study_give_the_same_volume(brainix, monkeypatch):
    """The thread pool (used from 1000 files, for cold disks) must order and place the
    headers and pixels exactly as the sequential path does."""
    import napari_tumorseg.io.dicom as dicom_mod

    s_seq, vol_seq, _ = _load_one(brainix / "FLAIR")
    monkeypatch.setattr(dicom_mod, "_PARALLEL_MIN_FILES", 2)
    s_thr, vol_thr, _ = _load_one(brainix / "FLAIR")
    assert vol_thr.data.shape == vol_seq.data.shape == (22, 288, 288)
    np.testing.assert_array_equal(vol_thr.data, vol_seq.data)
    np.testing.assert_allclose(vol_thr.affine, vol_seq.affine)
