"""A corrected case becomes training data: every channel of the scan and its labels, with the
scan's world geometry, in the layout the trainer reads (a NIfTI case folder).

Used by the Correct dock's "Add to training set" (and any script): the folder it writes is a
``nifti`` data source of :mod:`napari_tumorseg.training.datasets` — one sub-folder per case,
one file per sequence named by the sequence (so :mod:`napari_tumorseg.channels` matches them
to a model's channels) and ``<case>_seg.nii.gz``. A case is never replaced: each call makes
a new numbered folder, all files at once or none (staged).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.export.nifti import write_nifti
from napari_tumorseg.fileio import staged_outputs
from napari_tumorseg.io.volume import Volume


def _safe(name: str, fallback: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")
    return cleaned[:40] or fallback


def channel_names(volume: Volume) -> list[str]:
    """One file name per channel: the volume's channel names, else its name."""
    n = volume.data.shape[0] if volume.has_channels else 1
    names = list(volume.channel_names or [])[:n] if volume.has_channels else [volume.name]
    names += [f"channel{i}" for i in range(len(names), n)]
    safe = [_safe(s, f"channel{i}") for i, s in enumerate(names)]
    if len(set(s.lower() for s in safe)) != len(safe):
        safe = [f"{s}_{i}" for i, s in enumerate(safe)]
    return safe


def next_case_folder(folder: Path, stem: str = "case") -> Path:
    """``folder/<stem>_NNN``, the first number not taken."""
    stem = _safe(stem, "case")
    taken = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    n = 1
    while f"{stem}_{n:03d}" in taken:
        n += 1
    return folder / f"{stem}_{n:03d}"


def add_corrected_case(folder: str | Path, volume: Volume, labels: np.ndarray, stem: str = "case",
                       label_names: dict | None = None) -> list[Path]:
    """Write ``volume`` (all channels) and ``labels`` (on its grid) as a new training case.

    ``label_names`` ({value: name}) travel in the labels file: a corrected region map (1
    oedema, 2 core, 3 enhancing) is then trained as one, not read as BraTS 2023's 1 / 2 / 3.

    Returns the files written: one per channel in the volume's order, then the labels. Refuses labels on another grid, empty labels and a labels map
    with negative values, each with one line.
    """
    folder = Path(folder)
    labels = np.asarray(labels)
    grid = tuple(volume.spatial_shape)
    if labels.shape != grid:
        if labels.ndim == 2 and grid[0] == 1 and labels.shape == grid[1:]:
            labels = labels[None]
        else:
            raise TumorSegError(f"the labels {labels.shape} are not on the scan's grid {grid}")
    if not np.issubdtype(labels.dtype, np.integer) and not np.issubdtype(labels.dtype, np.bool_):
        raise TumorSegError(f"labels must be integers, got {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise TumorSegError("labels must not be negative")
    if not labels.any():
        raise TumorSegError("the labels are empty: nothing to learn from this case yet")
    case = next_case_folder(folder, stem)
    names = channel_names(volume)
    data = volume.data if volume.has_channels else volume.data[None]
    # Staged beside the case folder: a failure leaves no folder, not even an empty one.
    with staged_outputs(case) as stage:
        out = stage / case.name
        out.mkdir()
        for name, channel in zip(names, data):
            write_nifti(Volume(np.asarray(channel), spacing=volume.spacing, affine=volume.affine, name=name),
                        out / f"{name}.nii.gz")
        seg = labels.astype(np.uint16 if labels.max() > 255 else np.uint8)
        write_nifti(Volume(seg, spacing=volume.spacing, affine=volume.affine, name="seg", kind="labels"),
                    out / f"{case.name}_seg.nii.gz", intent="label",
                    label_names=label_names or None)
    # The scans in channel order, then the labels.
    return [case / f"{name}.nii.gz" for name in names] + [case / f"{case.name}_seg.nii.gz"]
