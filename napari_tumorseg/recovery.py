"""Crash recovery: snapshots of labels with unsaved edits, in a per-user folder.

A session writes each labels layer that holds unsaved user edits, every
:func:`autosave_seconds` at most, as one ``.npz`` file (the voxels and a JSON header with
the layer's grid) into :func:`recovery_dir` — a private folder of the user's, never beside
the patient's files. Each write is atomic (a temporary file renamed over the previous
snapshot), so a kill in the middle of a write leaves the previous snapshot intact.

A snapshot names the process that wrote it. One whose process is gone (a crash, a kill, a
viewer closed with unsaved edits) is an *orphan*: the next session offers it back, on its
grid, and forgets it once restored or discarded. Qt-free; the GUI side is
``widgets/_autosave.py``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.fileio import atomic_path

#: At most this much work is lost in a crash (the issue's bound is 60 s).
DEFAULT_AUTOSAVE_SECONDS = 30.0
_SUFFIX = ".labels.npz"


def autosave_seconds() -> float:
    """The auto-save period: ``TUMORSEG_AUTOSAVE_SECONDS`` (0.2-60), else 30 s."""
    raw = os.environ.get("TUMORSEG_AUTOSAVE_SECONDS")
    try:
        value = float(raw) if raw else DEFAULT_AUTOSAVE_SECONDS
    except ValueError:
        value = DEFAULT_AUTOSAVE_SECONDS
    return min(max(value, 0.2), 60.0)


def recovery_dir() -> Path:
    """The per-user recovery folder (``TUMORSEG_RECOVERY_DIR`` overrides), private to the user."""
    env = os.environ.get("TUMORSEG_RECOVERY_DIR")
    if env:
        path = Path(env)
    else:
        import platformdirs

        path = Path(platformdirs.user_state_dir("napari-tumorseg", appauthor=False)) / "recovery"
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as err:
        raise TumorSegError(f"cannot create the recovery folder: {err.strerror}") from err
    return path


def _process_start(pid: int) -> float | None:
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:  # noqa: BLE001 - gone, or not ours to inspect: treated as gone
        return None


def _boot_ticks(pid: int) -> tuple[str, int] | None:
    """(boot id, start in clock ticks since boot) of a Linux process, or None elsewhere.

    The wall-clock start time (psutil) is the boot time plus those ticks, and the boot time
    is read from the clock *now*: when the clock is stepped (NTP, a laptop waking) a live
    process's start moves by as much, and its snapshots looked orphaned (seen on a CI machine
    whose clock jumped). The ticks and the boot id do not move."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
        return boot, int(stat[stat.rindex(")") + 2:].split()[19])  # field 22: starttime
    except (OSError, ValueError, IndexError):
        return None


def _identity(pid: int) -> dict:
    ident = {"pid": pid, "started": _process_start(pid)}
    ticks = _boot_ticks(pid)
    if ticks is not None:
        ident["boot"], ident["ticks"] = ticks
    return ident


#: This process, as snapshots record it: pid and start (a reused pid is another process).
_OWNER = _identity(os.getpid())


def _owner_alive(owner: dict) -> bool:
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False
    if "ticks" in owner and "boot" in owner:
        now = _boot_ticks(pid)
        if now is not None:
            return now == (owner["boot"], owner["ticks"])
    started = _process_start(pid)
    return started is not None and (owner.get("started") is None or abs(started - owner["started"]) < 1.0)


@dataclass
class Snapshot:
    path: Path
    header: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.header.get("name", "labels"))

    @property
    def saved_at(self) -> float:
        return float(self.header.get("saved_at", 0.0))

    @property
    def orphaned(self) -> bool:
        return not _owner_alive(self.header.get("owner", {}))

    def load(self) -> np.ndarray:
        with np.load(self.path, allow_pickle=False) as z:
            return np.array(z["labels"])

    def discard(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def new_key() -> str:
    """A snapshot key for one labels layer of this process (no patient information in it)."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


def write_snapshot(key: str, labels: np.ndarray, *, name: str, geometry: dict[str, Any],
                   extra: dict[str, Any] | None = None, folder: Path | None = None) -> Path:
    """Write (or replace) the snapshot ``key`` atomically; returns its path.

    ``geometry``: the labels layer's ``scale``, ``translate`` and ``affine`` (lists), which put
    the voxels back exactly where they were on screen.
    """
    folder = folder or recovery_dir()
    header = {"format": 1, "name": name, "shape": list(np.shape(labels)), "dtype": str(np.asarray(labels).dtype),
              "geometry": geometry, "saved_at": time.time(), "owner": dict(_OWNER), **(extra or {})}
    path = folder / f"{key}{_SUFFIX}"
    with atomic_path(path, overwrite=True) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, labels=np.asarray(labels), header=np.array(json.dumps(header)))
    return path


def read_snapshot(path: Path) -> Snapshot | None:
    """The snapshot at ``path``, or None when it is unreadable (a foreign or damaged file)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
    except Exception:  # noqa: BLE001 - a damaged snapshot is skipped, never fatal
        return None
    return Snapshot(Path(path), header) if isinstance(header, dict) else None


def orphans(folder: Path | None = None) -> list[Snapshot]:
    """Snapshots whose writing process is gone, newest first."""
    try:
        folder = folder or recovery_dir()
    except TumorSegError:
        return []
    found = [read_snapshot(p) for p in sorted(folder.glob(f"*{_SUFFIX}"))]
    return sorted((s for s in found if s is not None and s.orphaned), key=lambda s: -s.saved_at)
