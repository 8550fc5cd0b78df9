"""One session per viewer: the case on screen, shared by every dock of that viewer.

The docks used to pass a case around through layer names (" tumour", " probability") and
flattened metadata, and the Correct dock read the checkpoint out of the Predict dock. Here
each viewer owns one :class:`ViewerSession` holding

* the source volumes behind the layers (geometry, DICOM references, channel order) —
  a multi-channel case shown as one layer per channel stays ONE volume;
* the loaded predictor and its checkpoint path;
* the prediction: source layer, probability cache and the two output layers (by
  reference, not by name — the user may rename them);
* the interactive (click) state: the current click engine.

Docks find it with :func:`session_for`; it is keyed weakly by the viewer, so closing a
viewer frees its case. Events tell the other docks that something changed.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from napari.utils.events import EmitterGroup

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.io.volume import Volume, apply_display_hints, volume_from_layer
from napari_tumorseg.user_edits import EditLedger
from napari_tumorseg.per_viewer import PerViewer, real_viewer

_SESSIONS: "PerViewer[ViewerSession]" = PerViewer()


def session_for(viewer) -> "ViewerSession":
    """The viewer's session, created on first use: the same for every dock of a viewer,
    whether it was given the viewer or napari's per-dock proxy of it."""
    viewer = real_viewer(viewer)
    session = _SESSIONS.get(viewer)
    if session is None:
        session = ViewerSession(viewer)
        _SESSIONS.set(viewer, session)
        # What every dock of a viewer needs once: orientation letters at the canvas edges and
        # the watch that announces a labels layer sitting on another grid than its scan.
        from napari_tumorseg.widgets.grid import install_grid_watch
        from napari_tumorseg.orientation_letters import install_orientation_letters

        install_orientation_letters(viewer)
        install_grid_watch(viewer)
        from napari_tumorseg.widgets._autosave import AutoSaver, offer_recovery

        session.autosaver = AutoSaver(session)
        offer_recovery(viewer, session)
    return session


@dataclass
class Prediction:
    """A model's output for one source layer: the probability cache and its two layers."""

    source: Any  # the image layer predicted on
    predictor: Any
    probabilities: np.ndarray  # (z, y, x) or (k, z, y, x) on the source grid
    prob_layer: Any = None
    labels_layer: Any = None
    threshold: float = 0.5
    #: z indices the map holds a prediction for (a whole-volume rule needs them all).
    predicted_z: set = field(default_factory=set)

    @property
    def complete(self) -> bool:
        return len(self.predicted_z) >= self.probabilities.shape[-3]


class ViewerSession:
    def __init__(self, viewer) -> None:
        self._viewer = weakref.ref(viewer)
        # id(layer) -> (weakref to layer, volume, channel index or None)
        self._volumes: dict[int, tuple[weakref.ref, Volume, int | None]] = {}
        self.predictor = None
        self.checkpoint_path: str | None = None
        self.prediction: Prediction | None = None
        self.click_engine = None
        self.autosaver = None  # widgets._autosave.AutoSaver, set by session_for
        # id(labels layer) -> (weakref to it, EditLedger): the voxels the user set by hand.
        self._ledgers: dict[int, tuple[weakref.ref, EditLedger]] = {}
        # The one canvas click tool of the viewer: (name shown to the user, its release callback).
        self._tool: tuple[str, Any] | None = None
        # The first scan of the case opened last: docks make it their scan when a case opens.
        self._newest_scan: weakref.ref | None = None
        self._open_batch: list[weakref.ref] | None = None  # see _start_open_batch
        self.events = EmitterGroup(source=self, case=None, predictor=None, prediction=None, edited=None,
                                   tool=None)
        viewer.layers.events.removed.connect(self._layer_removed)
        viewer.layers.events.inserted.connect(self._layer_inserted)
        for layer in viewer.layers:  # opened before any dock asked for the session
            apply_display_hints(layer)
            self._watch_edits(layer)

    @property
    def viewer(self):
        return self._viewer()

    # -- the case -----------------------------------------------------------------------
    def register(self, layers, volume: Volume) -> None:
        """Record that ``layers`` show ``volume`` (one layer per channel for a multi-channel case)."""
        layers = layers if isinstance(layers, (list, tuple)) else [layers]
        for i, layer in enumerate(layers):
            channel = i if volume.has_channels and len(layers) > 1 else None
            self._volumes[id(layer)] = (weakref.ref(layer), volume, channel)
            if isinstance(layer.metadata, dict):
                layer.metadata.setdefault("tumorseg", {})["case_channel"] = channel
        if layers and volume.kind == "image":
            self._newest_scan = weakref.ref(layers[0])
        self.events.case()

    def _entry(self, layer):
        hit = self._volumes.get(id(layer))
        if hit is not None and hit[0]() is layer:
            return hit
        return None

    def volume_of(self, layer) -> Volume:
        """The full source volume behind ``layer``: geometry, references, all channels."""
        hit = self._entry(layer)
        if hit is not None:
            return hit[1]
        kind = "labels" if layer.__class__.__name__ == "Labels" else "image"
        data = np.asarray(layer.data)
        vol = volume_from_layer(data, layer.metadata, layer.scale, layer.name, kind=kind)
        if getattr(layer, "rgb", False):
            # An RGB JPG of a grey scan: channels first, one slice.
            czyx = np.moveaxis(data, -1, 0)[:, None]
            vol = Volume(czyx, spacing=vol.spacing, affine=vol.affine, name=layer.name, kind="image",
                         source=vol.source, channel_names=["R", "G", "B", "A"][: czyx.shape[0]],
                         metadata=vol.metadata)
        elif data.ndim == 2:
            vol = Volume(data[None], spacing=vol.spacing, affine=vol.affine, name=layer.name, kind=kind,
                         source=vol.source, metadata=vol.metadata)
        return vol

    def image_layers(self) -> list:
        """Source scans: image layers that are not a prediction's probability map."""
        import napari

        outputs = {id(self.prediction.prob_layer)} if self.prediction and self.prediction.prob_layer else set()
        return [l for l in self.viewer.layers
                if isinstance(l, napari.layers.Image) and id(l) not in outputs
                and not l.metadata.get("tumorseg_output")]

    def case_volumes(self, exclude=None) -> list[Volume]:
        """Every distinct source volume of the viewer (a multi-channel case once), but ``exclude``'s."""
        skip = self._entry(exclude)[1] if exclude is not None and self._entry(exclude) else None
        seen, out = set(), []
        for layer in self.image_layers():
            if layer is exclude:
                continue
            vol = self.volume_of(layer)
            if vol is skip:
                continue
            if id(vol) not in seen:
                seen.add(id(vol))
                out.append(vol)
        return out

    def case_input(self, layer, sequences) -> Volume:
        """``layer``'s scan with the case's other scans on its grid whose MR sequence is one of
        ``sequences`` (a click model that reads any subset of them: what the case has, by name;
        the model gives zeros to the rest). The scan alone when nothing else qualifies."""
        from napari_tumorseg.channels import on_grid, sequence_of
        from napari_tumorseg.io.readers import combine_channels

        primary = self.volume_of(layer)
        if primary.has_channels or primary.kind != "image":
            return primary
        wanted = {str(q).lower() for q in sequences or ()}
        seqs = {sequence_of(primary).lower()}
        chosen = [primary]
        for vol in self.case_volumes(exclude=layer):
            seq = sequence_of(vol).lower()
            if (vol.kind == "image" and not vol.has_channels and seq in wanted and seq not in seqs
                    and on_grid(vol, primary)):
                chosen.append(vol)
                seqs.add(seq)
        return primary if len(chosen) == 1 else combine_channels(chosen, name=primary.name)

    def model_input(self, layer, predictor) -> Volume:
        """What ``predictor`` gets for ``layer``: its case's channels, in the checkpoint's order."""
        from napari_tumorseg.channels import ChannelPlan, assemble_input, fit_channels

        primary = self.volume_of(layer)
        if primary.kind != "image":
            raise TumorSegError(f"'{layer.name}' is a labels layer: choose a scan to predict on")
        plan = ChannelPlan.from_preprocessing(predictor.prep)
        vol = assemble_input(primary, self.case_volumes(exclude=layer), plan)
        czyx = vol.data if vol.has_channels else vol.data[None]
        fit_channels(czyx, plan, where=f"'{layer.name}'")  # refuses before any model call
        return vol

    # -- the model ----------------------------------------------------------------------
    def set_predictor(self, predictor, checkpoint_path: str | None = None) -> None:
        self.predictor = predictor
        self.checkpoint_path = str(checkpoint_path) if checkpoint_path and predictor is not None else None
        self.events.predictor()

    # -- the prediction -----------------------------------------------------------------
    def set_prediction(self, prediction: Prediction | None) -> None:
        self.prediction = prediction
        self.events.prediction()

    def source_of(self, labels_layer):
        """The scan a labels layer was predicted on (or None when it was not predicted here)."""
        p = self.prediction
        if p is not None and p.labels_layer is labels_layer and p.source in self.viewer.layers:
            return p.source
        return None

    # -- the canvas tool ------------------------------------------------------------------
    @property
    def active_tool(self) -> str | None:
        return self._tool[0] if self._tool is not None else None

    def claim_tool(self, name: str, release) -> None:
        """Make ``name`` the viewer's one canvas click tool; the previous owner's ``release``
        runs first (its button unchecks), so one press never drives two tools."""
        previous = self._tool
        self._tool = (name, release)
        if previous is not None and previous[1] != release:  # bound methods: equal, not identical
            previous[1]()
        self._show_tool()

    def release_tool(self, release) -> None:
        """The owner of ``release`` gives the canvas back (its button was unchecked)."""
        if self._tool is not None and self._tool[1] == release:
            self._tool = None
            self._show_tool()

    def owns_tool(self, release) -> bool:
        return self._tool is not None and self._tool[1] == release

    def _show_tool(self) -> None:
        """The active tool, named on the canvas (top left, small), where the user's eyes are."""
        viewer = self.viewer
        overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)
        if overlays is not None:
            from napari.components.overlays import TextOverlay

            key = "tumorseg_tool"
            if key not in overlays:
                overlays[key] = TextOverlay(position="top_left", color="#7fd4ff", font_size=9, visible=False)
            # Two short lines: one long one ran into the "A" letter of a narrow canvas.
            overlays[key].text = f"Click tool:\n{self.active_tool}" if self._tool else ""
            overlays[key].visible = self._tool is not None
        self.events.tool()

    # -- the user's edits ---------------------------------------------------------------
    def edits_of(self, layer, create: bool = False) -> EditLedger | None:
        """The ledger of ``layer``'s hand-made voxels (None when it has none and not ``create``)."""
        hit = self._ledgers.get(id(layer))
        if hit is not None and hit[0]() is layer:
            ledger = hit[1]
            ledger.resize(np.shape(layer.data))
            return ledger
        if not create:
            return None
        ledger = EditLedger(np.shape(layer.data))
        self._ledgers[id(layer)] = (weakref.ref(layer), ledger)
        return ledger

    def edited_mask(self, layer) -> np.ndarray | None:
        """Where the user edited ``layer`` (None: nowhere): what derived writes must leave alone."""
        ledger = self.edits_of(layer)
        return ledger.mask if ledger is not None and ledger.any else None

    def mark_exported(self, layer) -> None:
        """``layer``'s edits are now in a file the user chose: not "unsaved" any more."""
        ledger = self.edits_of(layer)
        if ledger is not None:
            ledger.mark_saved()
        if self.autosaver is not None:
            self.autosaver.forget(layer)

    def edited_layers(self) -> list:
        """Labels layers of the viewer holding user edits."""
        return [ref() for ref, ledger in self._ledgers.values()
                if ref() is not None and ref() in self.viewer.layers and ledger.any]

    def _watch_edits(self, layer) -> None:
        import napari

        if isinstance(layer, napari.layers.Labels):
            ref = weakref.ref(layer)
            layer.events.paint.connect(lambda event, ref=ref: self._painted(ref, event))

    def _painted(self, ref, event) -> None:
        """napari's paint event: one committed edit (a brush or eraser stroke, a fill, or one
        of our tools' ``data_setitem`` steps), as a list of history atoms."""
        layer = ref()
        if layer is None:
            return
        ledger = self.edits_of(layer, create=True)
        for atom in event.value or ():
            box = getattr(atom, "slice_key", None)
            if box is not None:  # a mask-based edit: brush, eraser, fill
                ledger.mark_box(tuple(box), getattr(atom, "mask", None))
            else:  # (indices, old values, new values) from data_setitem
                ledger.mark(tuple(atom[0]))
        self.events.edited(value=layer)

    def _layer_inserted(self, event) -> None:
        import napari

        layer = event.value
        apply_display_hints(layer)
        self._watch_edits(layer)
        # A scan opened by File -> Open or a drop is a new case as much as one from Load
        # study (which registers it): per-case panels refresh.
        if (isinstance(layer, napari.layers.Image) and isinstance(layer.metadata, dict)
                and not layer.metadata.get("tumorseg_output") and self._entry(layer) is None):
            # A case folder opens as one shown scan and the rest hidden (io.readers.layer_data):
            # the docks take the scan on screen, not the last file listed (the case's T2).
            current = self.newest_scan
            if layer.visible or current is None or not current.visible:
                self._newest_scan = weakref.ref(layer)
                if layer.visible:
                    self._start_open_batch()
            self.events.case()
        if self._open_batch is not None:
            self._open_batch.append(weakref.ref(layer))

    def _start_open_batch(self) -> None:
        """Layers inserted with a newly shown scan before control returns to the event loop
        came from the same File -> Open (a case folder: one shown scan, the others hidden, its
        label maps). napari makes the last of them the active layer — a hidden T2 or the truth — so
        the layer controls adjusted a scan nobody sees: the shown one is made active instead."""
        from qtpy.QtCore import QTimer

        if self._open_batch is None:
            QTimer.singleShot(0, self._end_open_batch)
        self._open_batch = []  # the shown scan joins it as every layer does, just after

    def _end_open_batch(self) -> None:
        batch, self._open_batch = self._open_batch or [], None
        viewer, shown = self.viewer, self.newest_scan
        if viewer is None or shown is None or not shown.visible:
            return
        active = viewer.layers.selection.active
        if active is not None and active is not shown and any(r() is active for r in batch):
            viewer.layers.selection.active = shown

    @property
    def newest_scan(self):
        """The first scan of the case opened last (None once it is closed)."""
        layer = self._newest_scan() if self._newest_scan is not None else None
        return layer if layer is not None and layer in self.viewer.layers else None

    def select_newest_scan(self, combo, refresh) -> None:
        """A dock's scan choice follows the case just opened: ``refresh`` fills ``combo``
        with the layer names first (the case event may come before the dock's own)."""
        refresh()
        layer = self.newest_scan
        if layer is not None and combo.findText(layer.name) >= 0:
            combo.setCurrentText(layer.name)

    def _layer_removed(self, event) -> None:
        layer = event.value
        self._volumes.pop(id(layer), None)
        self._ledgers.pop(id(layer), None)
        p = self.prediction
        if p is not None and layer in (p.source, p.prob_layer, p.labels_layer):
            if layer is p.source:
                self.set_prediction(None)
            else:
                if layer is p.prob_layer:
                    p.prob_layer = None
                if layer is p.labels_layer:
                    p.labels_layer = None
                self.events.prediction()
