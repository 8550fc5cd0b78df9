"""npe2 sample-data contributions: a synthetic DICOM phantom and a real 2D slice."""

from __future__ import annotations

from pathlib import Path

RESOURCES = Path(__file__).resolve().parent / "resources"
PHANTOM_DIR = RESOURCES / "sample_phantom_dicom"
SLICE_IMAGE = RESOURCES / "sample_2d" / "brain_mri_y676.jpg"
SLICE_MASK = RESOURCES / "sample_2d" / "brain_mri_y676_mask.tif"


def mri_phantom_dicom() -> list[tuple]:
    """FLAIR-like phantom + tumour ROI, read through the DICOM reader like a real study."""
    from napari_tumorseg._reader import _current_viewer, watch_viewer
    from napari_tumorseg.io.dicom import read_dicom
    from napari_tumorseg.io.orientation import to_display

    viewer = _current_viewer()
    if viewer is not None:
        watch_viewer(viewer)  # the ground truth is drawn as an outline (Volume.layer_data)
    layers = []
    for vol in read_dicom(PHANTOM_DIR):
        data, kwargs, layer_type = to_display(vol).layer_data()
        if layer_type == "labels":
            kwargs["name"] = "tumour (ground truth)"
            kwargs["opacity"] = 0.5
        else:
            kwargs["colormap"] = "gray"
        layers.append((data, kwargs, layer_type))
    # Image first so the labels draw on top.
    return sorted(layers, key=lambda t: t[2] == "labels")


def mri_slice_2d() -> list[tuple]:
    """A real FLAIR slice with its tumour outline (Roboflow brain-tumour set, CC BY 4.0)."""
    import numpy as np
    import tifffile

    from napari_tumorseg.io.readers import read_path

    image = read_path(SLICE_IMAGE)[0]
    data, kwargs, _ = image.layer_data()
    kwargs.update(name="brain MRI slice (CC BY 4.0)", colormap="gray")
    mask = (tifffile.imread(SLICE_MASK) > 0).astype(np.uint8)
    mask = mask.reshape(data.shape[-3:]) if data.ndim >= 3 else mask
    return [
        (data, kwargs, "image"),
        (mask, {"name": "tumour (ground truth)", "scale": kwargs["scale"], "translate": kwargs["translate"],
                "opacity": 0.5}, "labels"),
    ]
