"""What each value of a label map means, as a small JSON record that travels inside files.

A label map's values alone do not say what they are: 1-3 is BraTS 2013-2021's necrosis /
oedema / enhancing, BraTS 2023's core / oedema / enhancing, or this plugin's region map
(whole tumour, core, enhancing). Formats with a place for names keep them (NRRD segments,
DICOM-SEG segment labels); NIfTI (a comment extension) and TIFF (the JSON geometry record)
carry this record instead, and every reader of this package turns it back into
``metadata["label_names"]`` / ``metadata["label_colors"]``. Other tools ignore it.
"""

from __future__ import annotations

from collections.abc import Mapping


def label_record(label_names: Mapping | None, label_colors: Mapping | None = None) -> dict:
    """``{"label_names": {"1": name}, "label_colors": {"1": [r, g, b] in 0-1}}`` (JSON keys
    are strings); {} without names. Colours come in 0-1 or 0-255 (napari gives 0-1 RGBA)."""
    names = {str(int(k)): str(v) for k, v in (label_names or {}).items() if k is not None}
    if not names:
        return {}
    out: dict = {"label_names": names}
    colors = {str(k): [round(c, 4) for c in rgb] for k, rgb in unit_colors(label_colors).items()}
    if colors:
        out["label_colors"] = colors
    return out


def read_label_record(record) -> dict:
    """``{"label_names": {int: str}, "label_colors": {int: RGB 0-1}}`` from a record that
    :func:`label_record` wrote, as far as present; {} for anything malformed (the map then
    opens without names rather than with wrong ones)."""
    if not isinstance(record, Mapping):
        return {}
    out: dict = {}
    names, colors = record.get("label_names"), record.get("label_colors")
    try:
        if isinstance(names, Mapping) and names:
            out["label_names"] = {int(k): str(v) for k, v in names.items()}
        if isinstance(colors, Mapping) and colors:
            out["label_colors"] = {int(k): tuple(float(c) for c in v[:3]) for k, v in colors.items()}
    except (TypeError, ValueError):
        return {}
    return out


def unit_colors(colors) -> dict[int, tuple[float, float, float]]:
    """{label value: RGB in 0-1} from RGB(A) given in 0-1 or 0-255; the background (0) and
    napari's colour for any other value (the key None) are left out."""
    out = {}
    for k, v in (colors or {}).items():
        if k is None or int(k) == 0:
            continue
        rgb = [float(c) for c in list(v)[:3]]
        scale = 255.0 if max(rgb) > 1 else 1.0
        out[int(k)] = tuple(c / scale for c in rgb)
    return out
