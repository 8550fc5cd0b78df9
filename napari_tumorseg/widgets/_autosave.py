"""Auto-save of edited labels and the offer to restore them after a crash (GUI side).

The rules and the files are :mod:`napari_tumorseg.recovery`'s; this module only runs them
on a timer for one viewer's session and turns orphaned snapshots into a notification
with "Restore" and "Discard".
"""

from __future__ import annotations

import logging
import threading
import time
import weakref

import numpy as np
from qtpy.QtCore import QObject, QTimer

from napari_tumorseg import recovery

log = logging.getLogger("napari_tumorseg")
_OFFERED = False  # orphans are offered once per process, to the first viewer that opens


def layer_geometry(layer) -> dict:
    return {"scale": [float(v) for v in layer.scale], "translate": [float(v) for v in layer.translate],
            "affine": np.asarray(layer.affine.affine_matrix, float).tolist()}


class AutoSaver(QObject):
    """Writes every labels layer with unsaved user edits to the recovery folder on a timer."""

    def __init__(self, session, seconds: float | None = None) -> None:
        super().__init__()
        self._session = weakref.ref(session)
        self.seconds = seconds or recovery.autosave_seconds()
        # id(layer) -> (weakref, snapshot key, ledger generation written)
        self._written: dict[int, list] = {}
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self.last_error = ""
        self.timer = QTimer(self)
        self.timer.setInterval(int(self.seconds * 1000))
        self.timer.timeout.connect(self.save_now)
        self.timer.start()

    def _entry(self, layer) -> list:
        hit = self._written.get(id(layer))
        if hit is None or hit[0]() is not layer:
            hit = [weakref.ref(layer), recovery.new_key(), 0]
            self._written[id(layer)] = hit
        return hit

    def save_now(self, wait: bool = False) -> int:
        """Snapshot the layers edited since their last snapshot; returns how many. The copy is
        taken here (GUI thread, a few ms); compression and the write run in a thread."""
        session = self._session()
        if session is None:
            return 0
        if self._writer is not None and self._writer.is_alive():
            if not wait:
                return 0  # the next tick writes what this one would have
            self._writer.join()
        jobs = []
        for layer in session.edited_layers():
            ledger = session.edits_of(layer)
            entry = self._entry(layer)
            if ledger is None or not ledger.unsaved or entry[2] == ledger.generation:
                continue
            jobs.append((entry, ledger.generation, np.array(layer.data, copy=True), str(layer.name),
                         layer_geometry(layer)))
        if not jobs:
            return 0

        def write() -> None:
            for entry, generation, data, name, geometry in jobs:
                try:
                    recovery.write_snapshot(entry[1], data, name=name, geometry=geometry)
                    entry[2] = generation
                except Exception as err:  # noqa: BLE001 - a full disk must not take the viewer down
                    self.last_error = f"{type(err).__name__}"
                    log.warning("auto-save failed (%s)", type(err).__name__)

        self._writer = threading.Thread(target=write, name="tumorseg-autosave", daemon=True)
        self._writer.start()
        if wait:
            self._writer.join()
        return len(jobs)

    def forget(self, layer) -> None:
        """``layer`` was exported: its snapshot is no longer the only copy of the edits."""
        hit = self._written.pop(id(layer), None)
        if hit is not None and hit[0]() is layer:
            (recovery.recovery_dir() / f"{hit[1]}.labels.npz").unlink(missing_ok=True)


def offer_recovery(viewer, session) -> list:
    """Once per process: orphaned snapshots (a crash, a kill) offered back as a notification.
    Returns the orphans found (the notification's actions restore or discard them)."""
    global _OFFERED
    if _OFFERED:
        return []
    _OFFERED = True
    found = recovery.orphans()
    if not found:
        return []
    from napari.utils.notifications import Notification, notification_manager

    when = time.strftime("%H:%M", time.localtime(found[0].saved_at))
    notification_manager.dispatch(Notification(
        f"{len(found)} labels layer(s) with unsaved edits were recovered from a session that ended "
        f"without saving them (last auto-save {when}).", severity="warning",
        actions=[("Restore", lambda *_: restore(viewer, session, found)),
                 ("Discard", lambda *_: [s.discard() for s in found])],
    ))
    return found


def restore(viewer, session, snapshots) -> list:
    """Put each snapshot back as a labels layer on its grid; it counts as the user's unsaved
    work (auto-saved again under this session before the old snapshot is dropped)."""
    layers = []
    for snap in snapshots:
        try:
            data = snap.load()
        except Exception:  # noqa: BLE001 - a damaged snapshot is skipped, the others restored
            log.warning("a recovery snapshot could not be read")
            continue
        geo = snap.header.get("geometry", {})
        layer = viewer.add_labels(data, name=f"{snap.name} (recovered)", scale=geo.get("scale"),
                                  translate=geo.get("translate"), affine=geo.get("affine"))
        session.edits_of(layer, create=True).mark(np.ones(data.shape, bool))
        layers.append((layer, snap))
    if session.autosaver is not None and layers:
        session.autosaver.save_now(wait=True)
    for _layer, snap in layers:
        snap.discard()
    return [layer for layer, _ in layers]
