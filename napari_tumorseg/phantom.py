"""A synthetic FLAIR-like head phantom with a tumour, for the shipped volumetric sample.

No real brain volume in ../shared/data has a licence that allows redistribution, so the
volumetric sample is synthetic and says so. It is built to look like what a radiologist
opens: skull and scalp, grey and white matter, CSF-dark ventricles (FLAIR suppresses
fluid), a bright lobulated lesion with a brighter rim of oedema, a smooth coil bias
field and Rician noise. The ground truth is the lesion core + oedema.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

PHANTOM_SHAPE = (32, 128, 128)  # (z, y, x)
PHANTOM_SPACING = (4.0, 1.8, 1.8)  # mm, typical of a clinical 2D FLAIR


def make_phantom(shape=PHANTOM_SHAPE, spacing=PHANTOM_SPACING, seed: int = 7):
    """Return (image float32 in arbitrary MR units, tumour mask uint8 {0,1})."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)], indexing="ij")

    def ellipsoid(cz, cy, cx, rz, ry, rx):
        return ((zz - cz) / rz) ** 2 + ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2

    head = ellipsoid(0, 0, 0, 70, 100, 80)
    skull_outer, skull_inner = head <= 1.0, ellipsoid(0, 0, 0, 64, 93, 73) <= 1.0
    brain = ellipsoid(0, 2, 0, 60, 88, 68) <= 1.0
    # White matter: a smaller, bumpy core; grey matter is the rim of the brain.
    bumps = ndi.gaussian_filter(rng.standard_normal(shape), sigma=(1.5, 5, 5))
    wm = (ellipsoid(0, 4, 0, 45, 70, 52) + 0.6 * bumps) <= 1.0
    ventricles = (ellipsoid(8, -5, -9, 14, 24, 5) <= 1.0) | (ellipsoid(8, -5, 9, 14, 24, 5) <= 1.0)

    # Lobulated lesion in the right frontal lobe, oedema spreading into white matter.
    centre = np.array([6.0, -35.0, -28.0])
    lobes = np.zeros(shape, bool)
    for off, r in [((0, 0, 0), (10, 14, 13)), ((3, 6, -6), (8, 9, 10)), ((-4, -5, 5), (7, 8, 9))]:
        c = centre + np.array(off)
        lobes |= ellipsoid(*c, *r) <= 1.0
    core = lobes & brain
    oedema = (ndi.distance_transform_edt(~core, sampling=spacing) < 9.0) & wm & ~core
    necrosis = ndi.binary_erosion(core, iterations=2) & (ellipsoid(*centre, 5, 6, 6) <= 1.0)

    img = np.zeros(shape, np.float32)
    img[skull_outer] = 220.0  # scalp fat: bright on FLAIR
    img[skull_outer & skull_inner] = 30.0  # cortical bone: dark
    img[brain] = 330.0  # grey matter
    img[wm & brain] = 260.0  # white matter: darker on FLAIR
    img[ventricles & brain] = 40.0  # suppressed CSF
    img[oedema] = 520.0
    img[core] = 600.0
    img[necrosis] = 180.0
    img = ndi.gaussian_filter(img, sigma=(0.4, 0.8, 0.8))
    bias = 1.0 + 0.15 * np.sin(yy / 90.0 + 0.5) * np.cos(xx / 110.0)
    img *= bias.astype(np.float32)
    sigma = 12.0
    noisy = np.sqrt((img + rng.normal(0, sigma, shape)) ** 2 + rng.normal(0, sigma, shape) ** 2)
    mask = (core | oedema).astype(np.uint8)
    return noisy.astype(np.float32), mask


def write_phantom_dicom(folder: str | Path, overwrite: bool = False) -> tuple[Path, Path]:
    """Write the phantom as two DICOM series (FLAIR and ROI) of one study."""
    from pydicom.uid import generate_uid

    from napari_tumorseg.io.dicom_write import write_dicom_series
    from napari_tumorseg.io.volume import affine_from_spacing

    folder = Path(folder)
    image, mask = make_phantom()
    # Axial slices, origin placed so the volume is centred on the scanner isocentre.
    extent = np.array(PHANTOM_SHAPE) * np.array(PHANTOM_SPACING)
    affine = affine_from_spacing(PHANTOM_SPACING, origin=(-extent[2] / 2, -extent[1] / 2, -extent[0] / 2))
    study, frame = generate_uid(), generate_uid()
    common = dict(affine=affine, study_uid=study, frame_of_reference_uid=frame, overwrite=overwrite)
    write_dicom_series(np.round(image).astype(np.int16), folder / "FLAIR", series_description="PHANTOM FLAIR",
                       series_number=1, **common)
    write_dicom_series(mask, folder / "ROI", series_description="ROI tumour", series_number=2, **common)
    return folder / "FLAIR", folder / "ROI"


if __name__ == "__main__":  # regenerate resources/sample_phantom_dicom
    import sys

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "resources" / "sample_phantom_dicom"
    print(write_phantom_dicom(target, overwrite=True))
