"""DICOM series loading: napari_tumorseg.io.dicom against a naive pydicom loop.

Naive peer (what most scripts do): ``pydicom.dcmread`` every file with its pixels,
sort by InstanceNumber, stack ``pixel_array`` and apply RescaleSlope/Intercept.
Ours: ``scan_dicom`` (headers only, grouping, geometry) + ``load_dicom_series``
(pixel bytes read straight from the offset the scan found).

Cases: BRAINIX FLAIR (22 real Philips MR files) and a 155-slice 240x240 series written
here, to a temporary folder, from the BRATS 2013 FLAIR NIfTI as MR Image Storage files
with true positions/orientation (random file names). Both loaders must give the same
array; ours is also checked against the NIfTI's voxels and world coordinates.

Run: python benchmarks/bench_dicom_load.py [--repeats N] [--out benchmarks/RESULTS_dicom.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import tempfile
import time
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from napari_tumorseg.io.dicom import DicomWarning, load_dicom_series, scan_dicom

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
BRATS_FLAIR = DATA / "brats2013_deepmedic/train/brats_2013_pat0005_1/Flair_subtrMeanDivStd.nii.gz"
BRAINIX_FLAIR = DATA / "dicom_brainix/FLAIR"

SCALE = 1000.0  # z-scored float intensities stored as int16 with RescaleSlope 1/SCALE


def write_nifti_as_dicom(nifti: Path, out: Path) -> tuple[np.ndarray, np.ndarray]:
    """One MR Image Storage file per axial slice; returns the (z, y, x) float array
    the files encode and the NIfTI affine re-ordered to (z, y, x) indices."""
    img = nib.load(nifti)
    vol = np.asarray(img.dataobj, dtype=np.float32)  # (i, j, k)
    aff = img.affine
    lps = np.diag([-1.0, -1.0, 1.0]) @ aff[:3, :3]
    origin = np.diag([-1.0, -1.0, 1.0]) @ aff[:3, 3]
    sx, sy, sz = np.linalg.norm(aff[:3, :3], axis=0)
    row_cos, col_cos = lps[:, 0] / sx, lps[:, 1] / sy  # columns follow i, rows follow j
    stored = np.round(vol * SCALE).astype(np.int16)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    names = list(range(vol.shape[2]))
    random.Random(0).shuffle(names)
    for k in range(vol.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.SeriesDescription, ds.SeriesNumber = "MR", "BRATS2013 FLAIR", 1
        ds.PatientName, ds.PatientID = "BRATS2013^pat0005", "brats_2013_pat0005_1"
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(v) for v in origin + lps[:, 2] * k]
        ds.ImageOrientationPatient = [float(v) for v in (*row_cos, *col_cos)]
        ds.PixelSpacing = [float(sy), float(sx)]
        ds.SliceThickness = float(sz)
        ds.Rows, ds.Columns = vol.shape[1], vol.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = f"{1 / SCALE:g}", "0"
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        name = f"IMG{names[k]:05d}x{random.Random(k).randint(0, 1 << 30)}"  # no extension
        ds.save_as(out / name, enforce_file_format=True)
    zyx = stored.transpose(2, 1, 0).astype(np.float32) / np.float32(SCALE)
    perm = np.zeros((4, 4))
    perm[0, 2] = perm[1, 1] = perm[2, 0] = perm[3, 3] = 1  # (z, y, x) -> (i, j, k)
    return zyx, aff @ perm


def naive_load(folder: Path) -> np.ndarray:
    files = [p for p in folder.iterdir() if p.is_file()]
    dss = sorted((pydicom.dcmread(p) for p in files), key=lambda d: int(d.InstanceNumber))
    arr = np.stack([d.pixel_array for d in dss])
    slope = float(dss[0].get("RescaleSlope", 1) or 1)
    intercept = float(dss[0].get("RescaleIntercept", 0) or 0)
    if slope != 1 or intercept != 0:
        arr = (arr * slope + intercept).astype(np.float32)
    return arr


def ours_load(folder: Path):
    series, _ = scan_dicom(folder)
    return load_dicom_series(series[0])


def time_it(fn) -> tuple[float, float, object]:
    """(wall s, CPU s of this process, result). CPU time (all threads) is the steadier
    figure on a shared machine where wall time mostly measures the neighbours."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def run(repeats: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        brats = Path(tmp) / "brats_flair"
        brats.mkdir()
        t = time.perf_counter()
        truth, truth_affine = write_nifti_as_dicom(BRATS_FLAIR, brats)
        print(f"wrote {len(list(brats.iterdir()))} DICOM files in {time.perf_counter() - t:.1f} s")
        cases = [("BRAINIX FLAIR (real Philips MR)", BRAINIX_FLAIR, None),
                 ("BRATS 2013 FLAIR as DICOM, 240x240x155", brats, (truth, truth_affine))]
        for label, folder, check in cases:
            naive_load(folder), ours_load(folder)  # warm the page cache for both
            # alternate the two so drift on this shared machine hits both alike
            t = {"naive": [], "ours": [], "scan": []}
            for _ in range(repeats):
                *tn, ref = time_it(lambda: naive_load(folder))
                *to, vol = time_it(lambda: ours_load(folder))
                *ts, _ = time_it(lambda: scan_dicom(folder))
                t["naive"].append(tn), t["ours"].append(to), t["scan"].append(ts)
            # naive order is InstanceNumber: BRAINIX numbers run top-down, ours bottom-up
            # (ours rescales in float32 in place, naive via float64: equal to ~1 ulp)
            same = any(np.allclose(vol.data, r, rtol=1e-6, atol=0) for r in (ref, ref[::-1]))
            assert same, f"{label}: ours and naive disagree"
            if check is not None:
                np.testing.assert_allclose(vol.data, check[0], rtol=1e-6, atol=1e-6)
                np.testing.assert_allclose(vol.affine, check[1], atol=1e-4)
            n = len([p for p in folder.iterdir() if p.is_file()])
            best = {k: (min(x[0] for x in v) * 1e3, min(x[1] for x in v) * 1e3) for k, v in t.items()}
            rows.append({"case": label, "files": n, "shape": "x".join(map(str, vol.data.shape)),
                         **{f"{k}_{m}": best[k][i] for k in best for i, m in enumerate(("wall", "cpu"))}})
    return rows


def table(rows: list[dict], repeats: int) -> str:
    lines = [
        "| case | files | shape (z,y,x) | naive wall / CPU (ms) | ours wall / CPU (ms) "
        "| ours scan only, wall / CPU (ms) | speed-up wall | speed-up CPU |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['files']} | {r['shape']} | {r['naive_wall']:.0f} / {r['naive_cpu']:.0f} "
            f"| {r['ours_wall']:.0f} / {r['ours_cpu']:.0f} | {r['scan_wall']:.0f} / {r['scan_cpu']:.0f} "
            f"| {r['naive_wall'] / r['ours_wall']:.2f}x | {r['naive_cpu'] / r['ours_cpu']:.2f}x |"
        )
    lines.append("")
    lines.append(
        f"Best of {repeats} alternating runs, warm page cache, {os.cpu_count()} CPU cores "
        f"({platform.machine()}), Python {platform.python_version()}, pydicom {pydicom.__version__}. "
        "Speed-up = naive / ours (target >= 1.0x). Naive = dcmread every file with pixels, sort by "
        "InstanceNumber, stack pixel_array, apply rescale. Ours = scan_dicom (headers, grouping, "
        "geometry checks) + load_dicom_series (pixels read from the offset found by the scan). "
        "CPU = process time of all threads; wall time on a shared machine also counts waiting "
        "for the other processes."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    args = parser.parse_args()
    warnings.simplefilter("ignore", DicomWarning)
    md = table(run(args.repeats), args.repeats)
    print(md)
    if args.out:
        args.out.write_text("## DICOM loading\n\n" + md + "\n")


if __name__ == "__main__":
    main()
