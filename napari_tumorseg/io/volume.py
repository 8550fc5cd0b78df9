"""The one in-memory representation of an opened image or mask.

Axis convention everywhere in the package: arrays are (z, y, x) for volumes, with an
optional leading channel axis (c, z, y, x) for multi-modal cases. A 2D slice is a
volume with z == 1.

``affine`` is a 4x4 matrix mapping a voxel index (z, y, x, 1) to world coordinates
in millimetres in the RAS+ convention (NIfTI / nibabel). DICOM's LPS positions are
converted on read (x and y negated), so every reader and writer shares one frame.

Display order: the readers reorient every volume that has a real geometry (NIfTI,
DICOM) to one index order, the radiological one (io.orientation): z runs superior ->
inferior, y anterior -> posterior (row 0 anterior: anterior up), x patient right ->
left (column 0 the patient's right: right on screen-left). ``affine`` stays the exact
voxel -> RAS map of the reoriented array, and ``metadata["orientation"]`` records the
file's own order for exports. A picture without geometry (TIFF, JPG, PNG) is taken to
be stored as it should be shown, so :func:`affine_from_spacing` gives it that order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# One direction only: orientation never imports this module at run time (no cycle).
from napari_tumorseg.io.orientation import layer_geometry as _layer_geometry


@dataclass
class Volume:
    data: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    affine: np.ndarray | None = None
    name: str = "image"
    kind: str = "image"  # "image" or "labels"
    modality: str = ""
    source: list[str] = field(default_factory=list)
    channel_names: list[str] | None = None  # set when data has a leading channel axis
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.spacing = tuple(float(s) for s in self.spacing)
        if self.affine is None:
            self.affine = affine_from_spacing(self.spacing)
        self.affine = np.asarray(self.affine, dtype=float)

    @property
    def has_channels(self) -> bool:
        return self.channel_names is not None

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape[-3:])

    def translate(self) -> tuple[float, float, float]:
        """napari ``translate`` for the layer (see :func:`io.orientation.layer_geometry`)."""
        return self.layer_geometry()["translate"]

    def layer_geometry(self) -> dict[str, Any]:
        """napari ``scale``, ``translate`` and, for an oblique volume, ``affine``: the layer
        sits at its scanner position in napari's world frame (I, P, L mm), each slice flat
        (io.orientation.layer_geometry says why and how close)."""
        return _layer_geometry(self.affine, self.spatial_shape)

    def layer_data(self) -> tuple[np.ndarray, dict, str]:
        """napari LayerDataTuple: (data, kwargs, layer_type)."""
        meta = dict(self.metadata)
        # A study's case names each channel's layer itself ("T1c · case"; io.study).
        channel_layer_names = meta.pop("layer_names", None)
        meta["tumorseg"] = {
            "affine": self.affine.tolist(),
            "spacing": list(self.spacing),
            "source": list(self.source),
            "modality": self.modality,
            **meta.get("tumorseg", {}),
        }
        kwargs: dict[str, Any] = {"name": self.name, **self.layer_geometry(), "metadata": meta}
        if np.ndim(self.data) - (1 if self.has_channels else 0) == 3:
            # napari's world axes are (I, P, L) for every volume (io.orientation): the slider
            # of each says which slices it steps through, not napari's "-3".
            kwargs["axis_labels"] = SLIDER_LABELS
        if self.kind == "labels":
            # An opened mask is a reference (ground truth, an earlier export): drawn as an
            # outline in its own colour, so a filled prediction under it stays readable.
            # (Labels takes no ``contour`` argument: apply_display_hints sets it on insertion.)
            meta["tumorseg_display"] = {"contour": 2}
            # The Correct dock offers it as the ground truth to measure against.
            meta["tumorseg"]["reference"] = True
            colors = self.metadata.get("label_colors")
            if colors:  # a segmentation's own segment colours (3D Slicer's .seg.nrrd)
                kwargs["colormap"] = {None: GROUND_TRUTH_COLOR, 0: (0.0, 0.0, 0.0, 0.0),
                                      **{int(k): (*(float(c) for c in v[:3]), 1.0) for k, v in colors.items() if int(k)}}
            elif _is_binary(self.data):
                kwargs["colormap"] = {None: GROUND_TRUTH_COLOR, 0: (0.0, 0.0, 0.0, 0.0)}
            return self.data, kwargs, "labels"
        if self.has_channels:
            kwargs["channel_axis"] = 0
            if channel_layer_names and len(channel_layer_names) == len(self.channel_names):
                kwargs["name"] = [str(n) for n in channel_layer_names]
            else:
                kwargs["name"] = [c if c.startswith(self.name) else f"{self.name} {c}".strip()
                                  for c in self.channel_names]
            # One channel on screen at a time, in grey: additive greys of several scans
            # would add up to a washed-out picture. The others are a click away.
            kwargs["colormap"] = "gray"
            kwargs["visible"] = [i == 0 for i in range(len(self.channel_names))]
        return self.data, kwargs, "image"


#: What napari's slider of each world axis steps through (world axes I, P, L): axial slices
#: along the first, coronal along the second, sagittal along the third.
SLIDER_LABELS = ("axial", "coronal", "sagittal")


def apply_display_hints(layer) -> None:
    """Set on a napari layer what its constructor could not take (``metadata["tumorseg_display"]``,
    e.g. a reference mask's outline width). Applied once: the hints are removed, so a user who
    later turns the outline off keeps it off. Qt-free (napari's layer model only)."""
    meta = getattr(layer, "metadata", None)
    hints = meta.pop("tumorseg_display", None) if isinstance(meta, dict) else None
    for key, value in (hints or {}).items():
        if hasattr(layer, key):
            setattr(layer, key, value)


#: RGBA (0-1) of an opened reference mask: cyan, apart from the red/orange of predictions.
GROUND_TRUTH_COLOR = (0.0, 0.9, 1.0, 1.0)


def _is_binary(data) -> bool:
    """One tumour value (0/1, 0/255): one colour. Region maps keep a colour per label."""
    arr = np.asarray(data)
    tumour = arr[arr != 0]
    return tumour.size == 0 or tumour.min() == tumour.max()


def affine_from_spacing(spacing, origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Axis-aligned affine for (z, y, x) indices in the display order: x -> L, y -> P, z -> I.

    ``origin`` is the RAS position (mm) of voxel (0, 0, 0).
    """
    a = np.zeros((4, 4))
    a[0, 2] = -spacing[2]
    a[1, 1] = -spacing[1]
    a[2, 0] = -spacing[0]
    a[:3, 3] = origin
    a[3, 3] = 1.0
    return a


def volume_from_layer(data, metadata: dict | None, scale=None, name: str = "layer", kind: str = "image") -> Volume:
    """Rebuild a :class:`Volume` from a napari layer's parts (no napari import needed).

    The reader stores the geometry and source identity in ``metadata["tumorseg"]`` and,
    for DICOM, the UIDs in ``metadata["dicom"]``; exports need both.
    """
    metadata = dict(metadata or {})
    ts = metadata.get("tumorseg", {})
    arr = np.asarray(data)
    spacing = ts.get("spacing") or (list(scale)[-3:] if scale is not None else [1.0, 1.0, 1.0])
    if len(spacing) == 2:
        spacing = [1.0, *spacing]
    affine = ts.get("affine")
    return Volume(
        data=arr,
        spacing=tuple(spacing),
        affine=np.asarray(affine) if affine is not None else None,
        name=name,
        kind=kind,
        modality=ts.get("modality", ""),
        source=list(ts.get("source", [])),
        metadata={k: v for k, v in metadata.items() if k != "tumorseg"},
    )
