"""Scan a study once, then load the chosen series: the model behind "Load study".

DICOM folders and NIfTI, NRRD and MetaImage files are described from their headers, so a large study lists
its series in seconds and only the series the user picks have their pixels read.

What the dock offers, decided here so that it is the same wherever a study is opened:

* **Scans are ticked, masks are not.** A ground truth, a brain mask or an ROI series (an
  entry the readers call ``labels``, or whose name says mask/seg/truth/ROI:
  :func:`napari_tumorseg.io.nifti.is_label_name`) is listed unticked, never fed to "open as
  channels", and opens as a labels layer when the user ticks it.
* **Layers are named by sequence and case**, ``"<sequence> · <case>"`` ("T1c ·
  brats_2013_pat0003_1"): the MR sequence from the series or file name
  (:func:`napari_tumorseg.channels.sequence_of`, the rule the models' channels use) and the
  case folder (the folder holding the series, skipping folders that are themselves named
  after a sequence or a mask: ``dicom_brainix/FLAIR`` is case ``dicom_brainix``). A mask keeps
  its own name, less the case it starts with ("seg · BraTS2021_00002"); a scan whose sequence
  is not named keeps its name.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from napari_tumorseg.errors import ReadError, TumorSegError
from napari_tumorseg.io.nifti import as_labels, is_label_name
from napari_tumorseg.io.volume import Volume

SEPARATOR = " · "
_TRIM = " _-."


@dataclass
class StudyEntry:
    name: str
    kind: str  # "image" | "labels"
    modality: str
    shape: tuple[int, ...]  # (z, y, x)
    spacing: tuple[float, float, float]
    n_files: int
    load: Callable[[Callable[[int, int], None] | None], Volume] = field(repr=False)
    warnings: list[str] = field(default_factory=list)
    case: str = ""  # the case folder's name ("" when none can be told)
    sequence: str = ""  # "FLAIR", "T1", "T1c", "T2" or ""
    layer_name: str = ""  # what the opened layer is called (Study.scan fills it in)
    source: str = ""  # the file or folder it is read from
    title: str = ""  # what the dock's Series column shows (the name, and the format of a copy)
    copy: bool = False  # the same scan as an entry above it, in another file format

    @property
    def is_mask(self) -> bool:
        """A label map (ground truth, brain mask, ROI): offered as a mask, not a scan."""
        return self.kind == "labels" or is_label_name(self.name)

    @property
    def ticked(self) -> bool:
        """Ticked in the dock when the study is scanned: the scans, not the masks, and a scan
        kept in two formats (a .mha beside its .nii.gz) once."""
        return not self.is_mask and not self.copy

    @property
    def own_name(self) -> str:
        """The name without the case it starts with ("BraTS2021_00002_seg" -> "seg")."""
        return strip_case(self.name, self.case)

    @property
    def label(self) -> str:
        """The part of the layer name before the case: the sequence of a scan, else its name."""
        if self.is_mask:
            return self.own_name
        return self.sequence or self.own_name

    def summary(self) -> str:
        sp = " x ".join(f"{s:g}" for s in self.spacing)
        sz = " x ".join(str(s) for s in self.shape)
        return f"{self.name} [{self.modality or self.kind}] {sz} @ {sp} mm"


def strip_case(name: str, case: str) -> str:
    """``name`` without a leading ``case`` (case-insensitive, at a word boundary)."""
    if case and len(name) > len(case) and name.lower().startswith(case.lower()) and name[len(case)] in _TRIM:
        return name[len(case):].lstrip(_TRIM) or name
    return name


def case_of(source: str | Path) -> str:
    """The case folder of a scan: the folder holding it, or the first folder above whose name
    is not a sequence or a mask (a per-series folder such as ``FLAIR`` or ``ROI``)."""
    from napari_tumorseg.channels import sequence_of

    path = Path(source)
    folder = path if path.is_dir() else path.parent
    while folder.name and (sequence_of(folder.name) or is_label_name(folder.name)):
        folder = folder.parent
    return folder.name


def layer_name(label: str, case: str) -> str:
    """``"<label> · <case>"``; the case alone when the label is the case's own name."""
    if not case or label.lower() == case.lower():
        return label or case
    return f"{label}{SEPARATOR}{case}"


def _name_layers(entries: list[StudyEntry]) -> None:
    """Each entry's layer name; two scans that would share one (two FLAIRs of a case) keep
    their own names instead, and one file stored twice (a .mha beside its .nii.gz) says its
    format."""
    names = [layer_name(e.label, e.case) for e in entries]
    for i, (e, name) in enumerate(zip(entries, names)):
        e.title = e.name
        twins = [o for o, n in zip(entries, names) if n == name]
        same_file = [o for o in twins if o.own_name == e.own_name and o.shape == e.shape]
        if len(twins) == 1:
            e.layer_name = name
        elif len(same_file) > 1 and _format_of(e.source):
            fmt = _format_of(e.source)
            e.layer_name = layer_name(f"{e.label} ({fmt})", e.case)
            e.title = f"{e.name} ({fmt})"
            # The NIfTI is the one ticked (as before NRRD/MetaImage were read), else the first.
            rank = {o.source: (_format_of(o.source) != "NIfTI", entries.index(o)) for o in same_file}
            e.copy = min(rank.values()) != rank[e.source]
        else:
            e.layer_name = layer_name(e.own_name, e.case)


def _format_of(source: str) -> str:
    from napari_tumorseg.io.nifti import is_nifti_path
    from napari_tumorseg.io.nrrd_mha import itk_suffix

    if is_nifti_path(source):
        return "NIfTI"
    suffix = itk_suffix(source)
    return {".mha": "MetaImage", ".mhd": "MetaImage"}.get(suffix, "NRRD") if suffix else ""


@dataclass
class Opened:
    """What :meth:`Study.load` gives once done: the volumes, and notes for the user (a case
    whose scans could not be combined as channels, a mask that holds no labels)."""

    volumes: list[Volume]
    notes: list[str] = field(default_factory=list)


@dataclass
class Study:
    path: Path
    entries: list[StudyEntry]
    notes: list[str]

    @classmethod
    def scan(cls, path: str | Path) -> "Study":
        from napari_tumorseg.channels import sequence_of
        from napari_tumorseg.io import readers

        path = Path(path)
        if not path.exists():
            raise ReadError(f"{path} does not exist")
        entries = []
        for e in readers.entries(path):
            name = e.info["name"]
            entries.append(StudyEntry(
                name=name,
                kind=e.info["kind"],
                modality=e.info.get("modality") or "",
                shape=tuple(e.info["shape"]),
                spacing=tuple(e.info["spacing"]),
                n_files=int(e.info.get("n_files") or 0),
                load=(lambda _progress, e=e: e.load()),
                warnings=list(e.warnings),
                case=case_of(e.info.get("source") or path),
                source=str(e.info.get("source") or path),
                sequence=sequence_of(name),
            ))
        _name_layers(entries)
        return cls(path, entries, [])

    def load(self, indices: list[int], as_channels: bool = False) -> Iterator[tuple[int, int, str] | Opened]:
        """Generator: yields (done, total, message) while loading, then an :class:`Opened`.

        Each volume is named as its layer will be (see the module docstring); a mask opens as
        labels. With ``as_channels`` the chosen scans of each case become one multi-channel
        volume; a case whose scans do not share a grid stays separate, with a note saying why.
        """
        if not indices:
            raise ReadError("no series chosen")
        loaded: list[tuple[StudyEntry, Volume]] = []
        notes: list[str] = []
        total = len(indices)
        for n, i in enumerate(indices):
            entry = self.entries[i]
            yield (n, total, f"loading {entry.name}")
            volume, note = _prepared(entry, entry.load(None))
            loaded.append((entry, volume))
            if note:
                notes.append(note)
        yield (total, total, "done")
        volumes = [v for _, v in loaded]
        if as_channels:
            volumes, more = _combined_by_case(loaded)
            notes += more
        yield Opened(volumes, notes)


def _prepared(entry: StudyEntry, volume: Volume) -> tuple[Volume, str]:
    """The loaded volume named for its layer, with its sequence; a mask as labels."""
    metadata = dict(volume.metadata)
    if entry.sequence and not entry.is_mask:
        metadata.setdefault("sequence", entry.sequence)
    if volume.has_channels and entry.case:
        # One layer per channel: "FLAIR · case" for a named sequence, else "<scan> <channel> · case".
        from napari_tumorseg.channels import sequence_of

        scan = "" if entry.label.lower() == entry.case.lower() else f"{entry.label} "
        metadata["layer_names"] = [
            layer_name(c if sequence_of(c) else f"{scan}{c}", entry.case) for c in volume.channel_names
        ]
    note = ""
    kind, data = volume.kind, volume.data
    if entry.is_mask and kind != "labels" and not volume.has_channels:
        labels = as_labels(data)
        if labels is not None:
            kind, data = "labels", labels
        else:
            note = f"{entry.layer_name}: named like a mask but holds no label values; opened as an image"
    return replace(volume, name=entry.layer_name or volume.name, kind=kind, data=data, metadata=metadata), note


def _combined_by_case(loaded: list[tuple[StudyEntry, Volume]]) -> tuple[list[Volume], list[str]]:
    """The scans of each case as one multi-channel volume (masks left as they are)."""
    from napari_tumorseg.io.readers import combine_channels

    groups: OrderedDict[str, list[tuple[StudyEntry, Volume]]] = OrderedDict()
    for entry, volume in loaded:
        if volume.kind == "image":
            groups.setdefault(entry.case, []).append((entry, volume))
    combined: dict[int, Volume] = {}  # id of a case's first scan -> the case volume
    absorbed: set[int] = set()
    notes = []
    for case, members in groups.items():
        if len(members) < 2:
            continue
        try:
            volume = combine_channels([v for _, v in members], name=case or None)
        except TumorSegError as err:
            where = f"{case}: " if case else ""
            notes.append(f"{where}opened the series separately — {err}")
            continue
        if not any(v.has_channels for _, v in members):
            volume.metadata["layer_names"] = [layer_name(e.label, case) for e, _ in members]
        combined[id(members[0][1])] = volume
        absorbed |= {id(v) for _, v in members[1:]}
    out = [combined.get(id(v), v) for _, v in loaded if id(v) not in absorbed]
    return out, notes
