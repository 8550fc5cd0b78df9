"""Scan a study once, then load the chosen series: the model behind "Load study".

DICOM folders and NIfTI files are described from their headers, so a large study lists
its series in seconds and only the series the user picks have their pixels read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from napari_tumorseg.errors import ReadError
from napari_tumorseg.io.volume import Volume


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

    def summary(self) -> str:
        sp = " x ".join(f"{s:g}" for s in self.spacing)
        sz = " x ".join(str(s) for s in self.shape)
        return f"{self.name} [{self.modality or self.kind}] {sz} @ {sp} mm"


@dataclass
class Study:
    path: Path
    entries: list[StudyEntry]
    notes: list[str]

    @classmethod
    def scan(cls, path: str | Path) -> "Study":
        from napari_tumorseg.io import readers

        path = Path(path)
        if not path.exists():
            raise ReadError(f"{path} does not exist")
        entries = [
            StudyEntry(
                name=e.info["name"],
                kind=e.info["kind"],
                modality=e.info.get("modality") or "",
                shape=tuple(e.info["shape"]),
                spacing=tuple(e.info["spacing"]),
                n_files=int(e.info.get("n_files") or 0),
                load=(lambda _progress, e=e: e.load()),
                warnings=list(e.warnings),
            )
            for e in readers.entries(path)
        ]
        return cls(path, entries, [])

    def load(self, indices: list[int], as_channels: bool = False) -> Iterator[tuple[int, int, str] | list[Volume]]:
        """Generator: yields (done, total, message) while loading, then the volumes.

        With ``as_channels`` the chosen image series become one multi-channel case
        (they must share a grid; a clear error says which do not).
        """
        from napari_tumorseg.io.readers import combine_channels

        if not indices:
            raise ReadError("no series chosen")
        volumes: list[Volume] = []
        total = len(indices)
        for n, i in enumerate(indices):
            entry = self.entries[i]
            yield (n, total, f"loading {entry.name}")
            volumes.append(entry.load(None))
        yield (total, total, "done")
        if as_channels:
            images = [v for v in volumes if v.kind == "image"]
            others = [v for v in volumes if v.kind != "image"]
            if len(images) > 1:
                volumes = [combine_channels(images), *others]
        yield volumes

