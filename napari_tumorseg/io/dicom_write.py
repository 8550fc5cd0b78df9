"""Write a (z, y, x) array as a plain MR Image Storage DICOM series.

Used for the shipped phantom sample and by benchmarks that need a long series. The
geometry is explicit: the RAS ``affine`` of :class:`~napari_tumorseg.io.volume.Volume`
is turned back into DICOM's LPS ImagePositionPatient / ImageOrientationPatient, so a
series written here reads back onto the same world grid.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, PYDICOM_IMPLEMENTATION_UID, generate_uid

from napari_tumorseg.fileio import atomic_path
from napari_tumorseg.io.volume import affine_from_spacing

_LPS = np.diag([-1.0, -1.0, 1.0])


def write_dicom_series(
    data: np.ndarray,
    folder: str | Path,
    *,
    affine: np.ndarray | None = None,
    spacing=(1.0, 1.0, 1.0),
    series_description: str = "MR",
    series_number: int = 1,
    study_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    patient_name: str = "PHANTOM^TUMORSEG",
    patient_id: str = "TUMORSEG-0001",
    overwrite: bool = False,
) -> list[Path]:
    """Write one file per z slice (``IM-0001-NNNN.dcm``); returns the paths in z order.

    Integer data is stored as int16/uint16 as-is; float data is scaled into int16 with
    RescaleSlope/Intercept so readers that apply the modality LUT recover the values.
    """
    data = np.asarray(data)
    if data.ndim != 3:
        raise ValueError("write_dicom_series expects a (z, y, x) array")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if affine is None:
        affine = affine_from_spacing(spacing)
    affine = np.asarray(affine, dtype=float)
    # Columns of the affine: world step per z, y, x index; DICOM wants LPS.
    step_z, step_y, step_x = (_LPS @ affine[:3, i] for i in range(3))
    origin = _LPS @ affine[:3, 3]
    row_dir = step_x / np.linalg.norm(step_x)  # along a row = increasing column (x)
    col_dir = step_y / np.linalg.norm(step_y)
    pixel_spacing = [float(np.linalg.norm(step_y)), float(np.linalg.norm(step_x))]
    slice_gap = float(np.linalg.norm(step_z))

    stored, slope, intercept = _to_stored(data)
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    frame_uid = frame_of_reference_uid or generate_uid()
    now = _dt.datetime.now()
    paths = []
    for k in range(data.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = "MR"
        ds.SeriesDescription = series_description
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientSex = "O"
        ds.PatientBirthDate = ""
        ds.StudyDate = ds.SeriesDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = now.strftime("%H%M%S")
        ds.StudyID = "1"
        ds.AccessionNumber = ""
        ds.ReferringPhysicianName = ""
        ds.Manufacturer = "napari-tumorseg"
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.ScanningSequence = "RM"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.ImagePositionPatient = [float(v) for v in origin + k * step_z]
        ds.ImageOrientationPatient = [float(v) for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = pixel_spacing
        ds.SliceThickness = slice_gap
        ds.SpacingBetweenSlices = slice_gap
        ds.SliceLocation = float(np.dot(origin + k * step_z, np.cross(row_dir, col_dir)))
        ds.Rows, ds.Columns = stored.shape[1:]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.RescaleType = "US"
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        path = folder / f"IM-{series_number:04d}-{k + 1:04d}.dcm"
        with atomic_path(path, overwrite=overwrite) as tmp:
            pydicom.dcmwrite(tmp, ds, enforce_file_format=True)
        paths.append(path)
    return paths


def _to_stored(data: np.ndarray):
    if np.issubdtype(data.dtype, np.integer):
        lo, hi = int(data.min()), int(data.max())
        if lo >= 0 and hi <= np.iinfo(np.uint16).max:
            return data.astype(np.uint16), 1.0, 0.0
        if lo >= np.iinfo(np.int16).min and hi <= np.iinfo(np.int16).max:
            return data.astype(np.int16), 1.0, 0.0
    lo, hi = float(np.min(data)), float(np.max(data))
    slope = (hi - lo) / 65000.0 if hi > lo else 1.0
    intercept = lo + 32500.0 * slope
    stored = np.round((data - intercept) / slope).clip(-32768, 32767).astype(np.int16)
    return stored, float(slope), float(intercept)
