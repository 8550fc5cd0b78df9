"""Dock widget: fine-tune any registry model on a folder, a COCO export or open layers.

A thin driver of :func:`napari_tumorseg.training.engine.train`: the generator runs in
napari's ``thread_worker``; every event it yields updates the progress bar, the ETA and
the live loss/Dice plot on the GUI thread. Cancel is polled by the engine before every
optimiser step, so it takes effect within one step and leaves a resumable ``last.pt``.

Without CUDA the dock starts on the model's CPU recipe (measured to learn in minutes on a
CPU; see models.registry.Recipe); the paper's preset is one switch away. Start on a folder
that already holds a run asks whether to resume it or start anew.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import napari
import numpy as np
from matplotlib.figure import Figure
from napari.utils import progress
from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.models import default_recipe, get_info, get_recipe, list_models
from napari_tumorseg.progress import progress_text
from napari_tumorseg.training.engine import LAST, TrainConfig, pick_device, recipe_summary, train
from napari_tumorseg.training.losses import LOSS_NAMES
from napari_tumorseg.training.events import (
    CancelledEvent,
    DoneEvent,
    EpochEvent,
    ErrorEvent,
    StartEvent,
    StepEvent,
)
from napari_tumorseg.per_viewer import real_viewer
from napari_tumorseg.widgets._common import (
    PathPicker,
    notify_error,
    scroll_body,
    set_choices,
    show_info,
    show_warning,
    start_worker,
    thread_worker,
    worker_error_handler,
)
from napari_tumorseg.widgets._precision import PrecisionCombo


class LossHistory:
    """Train/val loss and val Dice per epoch, rendered to an image with matplotlib's Agg.

    Rendering happens in the training thread, not the GUI thread: a matplotlib draw costs
    hundreds of milliseconds of CPU on a busy 2-core machine, which would freeze the
    viewer once per epoch. The GUI thread only shows the finished image.
    """

    def __init__(self, epochs=(), train_loss=(), val_loss=(), val_dice=(), size=(380, 230)):
        self.epochs, self.train_loss = list(epochs), list(train_loss)
        self.val_loss, self.val_dice = list(val_loss), list(val_dice)
        self.size = size

    def add(self, ev: EpochEvent) -> None:
        self.epochs.append(ev.epoch + 1)
        self.train_loss.append(ev.train_loss)
        self.val_loss.append(np.nan if ev.val_loss is None else ev.val_loss)
        self.val_dice.append(ev.metrics.get("dice", np.nan))

    def copy(self) -> "LossHistory":
        return LossHistory(self.epochs, self.train_loss, self.val_loss, self.val_dice, self.size)

    def render(self) -> np.ndarray:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        dpi = 100
        # napari's dark theme colours, so the plot sits in the dock like the rest of it.
        bg, fg = "#262930", "#d6d9de"
        fig = Figure(figsize=(self.size[0] / dpi, self.size[1] / dpi), dpi=dpi, facecolor=bg)
        FigureCanvasAgg(fig)
        fig.subplots_adjust(left=0.15, right=0.85, bottom=0.18, top=0.95)
        ax = fig.add_subplot(111, facecolor=bg)
        ax2 = ax.twinx()
        for a in (ax, ax2):
            a.tick_params(colors=fg, labelsize=8)
            a.yaxis.label.set_color(fg)
            a.xaxis.label.set_color(fg)
            for spine in a.spines.values():
                spine.set_color(fg)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax2.set_ylabel("val Dice")
        ax2.set_ylim(0, 1)
        lines = ax.plot(self.epochs, self.train_loss, "o-", color="tab:blue", label="train loss")
        lines += ax.plot(self.epochs, self.val_loss, "s--", color="tab:orange", label="val loss")
        lines += ax2.plot(self.epochs, self.val_dice, "^-", color="tab:green", label="val Dice")
        if self.epochs:
            ax.set_xlim(0.5, max(self.epochs) + 0.5)
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        legend = ax.legend(lines, [l.get_label() for l in lines], fontsize=7, loc="upper right",
                           facecolor=bg, edgecolor=fg)
        for text in legend.get_texts():
            text.set_color(fg)
        fig.canvas.draw()
        return np.asarray(fig.canvas.buffer_rgba()).copy()


class LossPlot(QLabel):
    """Shows the image rendered by :class:`LossHistory`."""

    def __init__(self):
        super().__init__()
        self.setAlignment(Qt.AlignCenter)
        self.history = LossHistory()
        self.setMinimumSize(*self.history.size)  # the dock scrolls rather than crop the plot
        self.show_history(self.history, self.history.render())

    # The lists tests and users read.
    @property
    def epochs(self):
        return self.history.epochs

    @property
    def train_loss(self):
        return self.history.train_loss

    def show_history(self, history: LossHistory, image: np.ndarray) -> None:
        self.history = history
        h, w = image.shape[:2]
        self._image = QImage(image.data, w, h, 4 * w, QImage.Format_RGBA8888).copy()
        self.setPixmap(QPixmap.fromImage(self._image))


class TrainWidget(QWidget):
    #: emitted on the GUI thread after each epoch's plot update (tests and the predictor use it)
    epoch_done = Signal(object)

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent=None):
        super().__init__(parent)
        self.viewer = real_viewer(napari_viewer)  # the viewer itself, not the proxy napari hands a dock
        self._worker = None
        self._cancel = threading.Event()
        self._pbar = None
        self.events: list = []
        self.last_result = None
        self._overwrite_once = False

        # -- model ----------------------------------------------------------------------
        self.model_combo = QComboBox()
        self.model_combo.addItems(list_models())
        self.model_combo.currentTextChanged.connect(self.apply_preset)
        self.paper_label = QLabel("")
        self.paper_label.setWordWrap(True)
        self.recipe = QComboBox()
        self.recipe.addItem("CPU quick", "cpu")
        self.recipe.addItem("paper", "paper")
        self.recipe.setToolTip("CPU quick: width, size, loss and schedule measured to learn in "
                               "minutes on a CPU; paper: the paper's preset")
        self.recipe.currentIndexChanged.connect(lambda *_: self.apply_preset(self.model_combo.currentText()))
        self.small = QCheckBox("Tiny model (smoke test)")
        self.small.setToolTip("the model's smallest width: checks the data and the set-up in seconds")
        self.small.toggled.connect(self._update_width_field)
        self.interactive = QCheckBox("Interactive (click-guided)")
        self.interactive.setToolTip(
            "extra input channels for positive / negative clicks and the previous mask; training "
            "simulates a user clicking from the ground truth. Segment by clicks and Predict use it")
        self.width = QSpinBox()
        self.width.setRange(1, 512)
        self.width.setToolTip("features of the first level (x2 per level); the paper's is 64")
        self.pretrained = PathPicker("optional pretrained weights (local file)", folder=True)

        # -- data -----------------------------------------------------------------------
        self.src_path = QRadioButton("Folder / COCO export")
        self.src_layers = QRadioButton("Open layers")
        self.src_path.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.src_path)
        group.addButton(self.src_layers)
        self.data_picker = PathPicker("COCO export, image+mask folder, LGG, NIfTI/DICOM cases; several: A; B")
        self.add_data = QPushButton("Add…")
        self.add_data.setToolTip("add another data folder: sources of other years and file namings train "
                                 "together (folders separated by ';'), split by patient, channels matched by name")
        self.add_data.clicked.connect(self._pick_more_data)
        self.image_layer = QComboBox()
        self.labels_layer = QComboBox()
        self.out_picker = PathPicker("output folder for last.pt, best.pt, history.csv", file=False)
        self.resume_picker = PathPicker("resume from checkpoint (last.pt)", "Checkpoint (*.pt)", folder=False)

        # -- hyper-parameters -----------------------------------------------------------
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 10000)
        self.batch = QSpinBox()
        self.batch.setRange(1, 1024)
        self.lr = QLineEdit()
        self.size = QSpinBox()
        self.size.setRange(16, 1024)
        self.size.setSingleStep(16)
        self.loss = QComboBox()
        self.loss.addItems(list(LOSS_NAMES))
        self.scheduler = QComboBox()
        self.scheduler.addItems(["none", "step", "cosine", "poly"])
        self.max_minutes = QDoubleSpinBox()
        self.max_minutes.setRange(0.0, 100000.0)
        self.max_minutes.setDecimals(1)
        self.max_minutes.setSpecialValueText("no limit")
        self.max_minutes.setSuffix(" min")
        self.max_minutes.setToolTip("stop after the epoch that passes this time; best.pt is kept")
        self.overwrite = QCheckBox("Overwrite an earlier run")
        self.overwrite.setToolTip("replace last.pt, best.pt and history.csv in the output folder "
                                  "without asking; unticked, Start asks to resume or start anew")
        self.augment = QCheckBox("Augmentation")
        self.augment.setToolTip("flips, rotations, blur, contrast")
        self.augment.setChecked(True)
        self.strength = QDoubleSpinBox()
        self.strength.setRange(0.0, 2.0)
        self.strength.setSingleStep(0.25)
        self.strength.setValue(1.0)
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda", "mps"])
        self.precision = PrecisionCombo()
        self.device.currentTextChanged.connect(self.precision.refresh)
        self.precision.currentIndexChanged.connect(lambda *_: self.precision.refresh(self.device.currentText()))
        self.val_fraction = QDoubleSpinBox()
        self.val_fraction.setRange(0.05, 0.9)
        self.val_fraction.setSingleStep(0.05)
        self.val_fraction.setValue(0.2)
        self.show_prediction = QCheckBox("Preview on the viewed slice each epoch")
        self.show_prediction.setToolTip("predict the slice in view with each epoch's weights")

        # -- run ------------------------------------------------------------------------
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.plot = LossPlot()

        form = self._form = QFormLayout()
        form.addRow("Model", self.model_combo)
        form.addRow("Recipe", self.recipe)
        form.addRow(self.paper_label)
        form.addRow(self.small)
        form.addRow(self.interactive)
        form.addRow("Width", self.width)
        form.addRow("Pretrained", self.pretrained)
        src_row = QHBoxLayout()
        src_row.addWidget(self.src_path)
        src_row.addWidget(self.src_layers)
        form.addRow("Data", src_row)
        path_row = QHBoxLayout()
        path_row.addWidget(self.data_picker, 1)
        path_row.addWidget(self.add_data)
        form.addRow("Path", path_row)
        form.addRow("Image layer", self.image_layer)
        form.addRow("Labels layer", self.labels_layer)
        form.addRow("Output", self.out_picker)
        form.addRow("Resume", self.resume_picker)
        form.addRow(self.overwrite)
        hp = QGroupBox("Training (the recipe's values, every value editable)")
        hpf = QFormLayout(hp)
        hpf.addRow("Epochs", self.epochs)
        hpf.addRow("Time limit", self.max_minutes)
        hpf.addRow("Batch size", self.batch)
        hpf.addRow("Learning rate", self.lr)
        hpf.addRow("Loss", self.loss)
        hpf.addRow("Schedule", self.scheduler)
        hpf.addRow("Input size", self.size)
        aug = QHBoxLayout()
        aug.addWidget(self.augment)
        aug.addWidget(QLabel("strength"))
        aug.addWidget(self.strength)
        hpf.addRow(aug)
        hpf.addRow("Validation fraction", self.val_fraction)
        dev = QHBoxLayout()
        dev.addWidget(self.device, 1)
        dev.addWidget(QLabel("Precision"))
        dev.addWidget(self.precision, 1)
        hpf.addRow("Device", dev)
        hpf.addRow(self.show_prediction)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(scroll_body(self))
        layout.addLayout(form)
        layout.addWidget(hp)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.plot, 1)

        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        from napari_tumorseg.widgets._session import session_for

        session_for(self.viewer).events.case.connect(self._new_case)
        self._refresh_layers()
        self.apply_preset(self.model_combo.currentText())

    # -- configuration ------------------------------------------------------------------
    def apply_preset(self, name: str) -> None:
        """Fill the fields from the chosen recipe of model ``name``."""
        if not name:
            return
        info = get_info(name)
        if name != getattr(self, "_recipe_model", None):
            # A newly chosen model starts on its default recipe for this machine.
            self._recipe_model = name
            self._select_recipe(default_recipe(name, pick_device("auto").type))
        cpu_item = self.recipe.model().item(self.recipe.findData("cpu"))
        cpu_item.setEnabled(info.cpu_recipe is not None)
        if info.cpu_recipe is None and self.recipe.currentData() == "cpu":
            self._select_recipe("paper")
        recipe = get_recipe(name, self.recipe.currentData())
        p = recipe.preset
        self.epochs.setValue(int(p.epochs))
        self.max_minutes.setValue(float(recipe.max_minutes or 0.0))
        self.batch.setValue(int(p.batch_size))
        self.lr.setText(f"{p.lr:g}")
        self.loss.setCurrentText(p.loss)
        self.scheduler.setCurrentText(p.scheduler)
        size = (recipe.input_size or info.input_size or (256,))[-1]
        self.size.setValue(int(size))
        self.augment.setChecked(recipe.augmentation > 0)
        if recipe.augmentation > 0:
            self.strength.setValue(float(recipe.augmentation))
        width = {**info.default_config, **recipe.model_config}.get("width")
        self._has_width = isinstance(width, int) and not isinstance(width, bool)
        self.width.setVisible(self._has_width)
        label = self._form.labelForField(self.width)
        if label is not None:
            label.setVisible(self._has_width)
        if self._has_width:
            self.width.setValue(int(width))
        self._update_width_field()
        # One short line in the dock; the recipe's full description is the tooltip.
        self.paper_label.setText(
            f"seed {info.paper[:3]} · {recipe.name} recipe · {info.dims}D {info.output} · {p.loss} · "
            f"{p.optimizer} {p.lr:g} · {p.scheduler} · {p.batch_size}×{p.epochs}"
            + (f" or {recipe.max_minutes:g} min" if recipe.max_minutes else "")
        )
        self.paper_label.setToolTip(f"{info.description}\n{recipe.note}")
        self.model_combo.setToolTip(info.description)

    def _update_width_field(self, *_) -> None:
        # The tiny model brings its own width.
        self.width.setEnabled(getattr(self, "_has_width", False) and not self.small.isChecked())

    def _select_recipe(self, name: str) -> None:
        self.recipe.blockSignals(True)
        self.recipe.setCurrentIndex(self.recipe.findData(name))
        self.recipe.blockSignals(False)

    def _pick_more_data(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        name = QFileDialog.getExistingDirectory(self, "Add a data folder", "")
        if name:
            self.add_data_path(name)

    def add_data_path(self, path) -> None:
        """One more data folder in the Path field (several train together; ';' between)."""
        text = self.data_picker.edit.text().strip()
        self.data_picker.edit.setText(f"{text}; {path}" if text else str(path))

    def _refresh_layers(self, *_):
        for combo, kind in ((self.image_layer, napari.layers.Image), (self.labels_layer, napari.layers.Labels)):
            set_choices(combo, [l.name for l in self.viewer.layers if isinstance(l, kind)])

    def _new_case(self, *_):
        """"Open layers" follows the case just opened: its first scan, and the labels layer
        on its grid opened last (its segmentation), when there is one."""
        from napari_tumorseg.widgets._session import session_for

        session = session_for(self.viewer)
        session.select_newest_scan(self.image_layer, self._refresh_layers)
        scan = session.newest_scan
        if scan is None:
            return
        grid = tuple(session.volume_of(scan).spatial_shape)
        masks = [l.name for l in self.viewer.layers
                 if isinstance(l, napari.layers.Labels) and tuple(np.shape(l.data))[-len(grid):] == grid]
        if masks:
            self.labels_layer.setCurrentText(masks[-1])

    def _layer_data(self) -> list[tuple]:
        """The open image + labels pair as one in-memory training case."""
        img_name, lab_name = self.image_layer.currentText(), self.labels_layer.currentText()
        if not img_name or not lab_name:
            raise TumorSegError("open an image and a labels layer to train on layers")
        from napari_tumorseg.widgets._session import session_for

        image, labels = self.viewer.layers[img_name], self.viewer.layers[lab_name]
        # The session's volume: every channel of a multi-channel case, with their names.
        vol = session_for(self.viewer).volume_of(image)
        mask = np.asarray(labels.data)
        mask3 = mask[None] if mask.ndim == 2 else mask
        if tuple(vol.spatial_shape) != mask3.shape:
            raise TumorSegError(
                f"image {img_name!r} {vol.spatial_shape} and labels {lab_name!r} {mask.shape} are not on one grid"
            )
        data = vol.data if vol.has_channels else vol.data.reshape(vol.spatial_shape)
        names = labels.metadata.get("label_names") if isinstance(labels.metadata, dict) else None
        return [{"image": data, "mask": mask3, "spacing": tuple(vol.spacing), "case_id": img_name,
                 "channel_names": list(vol.channel_names) if vol.has_channels else None,
                 "label_names": names}]

    def build_config(self) -> TrainConfig:
        out = self.out_picker.path()
        if out is None:
            raise TumorSegError("choose an output folder for the checkpoints")
        if self.src_layers.isChecked():
            data = self._layer_data()
        else:
            data = self.data_picker.path()
            if data is None:
                raise TumorSegError("choose the training data (folder or COCO export)")
        try:
            lr = float(self.lr.text())
        except ValueError:
            raise TumorSegError(f"learning rate {self.lr.text()!r} is not a number") from None
        resume = self.resume_picker.path()
        pretrained = self.pretrained.path()
        aug = self.strength.value() if self.augment.isChecked() else False
        model_config = {"width": self.width.value()} if self.width.isEnabled() else {}
        return TrainConfig(
            model=self.model_combo.currentText(),
            data=data if isinstance(data, list) else str(data),
            out_dir=str(out),
            epochs=self.epochs.value(),
            batch_size=self.batch.value(),
            lr=lr,
            size=self.size.value(),
            device=self.device.currentText(),
            precision=self.precision.choice(),
            augmentation=aug,
            val_fraction=self.val_fraction.value(),
            resume=str(resume) if resume else None,
            pretrained=str(pretrained) if pretrained else None,
            tiny=self.small.isChecked(),
            overwrite=bool(resume) or self.overwrite.isChecked() or self._overwrite_once,
            recipe=self.recipe.currentData(),
            loss=self.loss.currentText(),
            scheduler=self.scheduler.currentText(),
            model_config=model_config,
            max_minutes=self.max_minutes.value() or None,
            interactive=self.interactive.isChecked(),
        )

    # -- running ------------------------------------------------------------------------
    def start(self):
        if self._worker is not None:
            notify_error(TumorSegError("a training run is already going"))
            return None
        if not self._resolve_earlier_run():
            return None
        try:
            config = self.build_config()
        except TumorSegError as err:
            notify_error(err)
            return None
        finally:
            self._overwrite_once = False
        self._cancel.clear()
        self.events = []
        self.last_result = None
        history = self.plot.history.copy() if config.resume else LossHistory()
        if not config.resume:
            self.plot.show_history(history, history.render())
        cancel = self._cancel.is_set

        @thread_worker
        def work():
            for ev in train(config, cancel=cancel):
                if isinstance(ev, EpochEvent):
                    history.add(ev)
                    yield ev, history.copy(), history.render()
                else:
                    yield ev, None, None

        # Created here, at the click, not on the first event: napari's first progress bar
        # builds its activity dock, a one-off cost better paid before training starts.
        self._pbar = progress(total=0, desc="Training: preparing data")
        worker = work()
        worker.yielded.connect(self._on_event)
        worker.errored.connect(worker_error_handler("training stopped"))
        worker.finished.connect(self._on_finished)
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText("preparing data and model…")
        self._worker = worker
        start_worker(worker)
        return worker

    def _resolve_earlier_run(self) -> bool:
        """An output folder that holds a run: ask to resume it or start anew (False: the
        user cancelled). Ticking Overwrite, or naming another checkpoint to resume, says it.
        The rule is :mod:`napari_tumorseg.training.resume`'s; this only asks."""
        from napari_tumorseg.training.resume import earlier_run, plan_start

        run = earlier_run(self.out_picker.path(), self.resume_picker.path(), self.overwrite.isChecked())
        if run is None:
            return True
        done = self.last_result if isinstance(self.last_result, DoneEvent) else None
        choice = ask_start_or_resume(self, run.folder, run.summary())
        if choice is None:
            return False
        try:
            plan = plan_start(run, choice, self.epochs.value(),
                              time_limited=bool(done is not None and done.time_limit_reached))
        except TumorSegError as err:
            notify_error(err)
            return False
        if plan.overwrite:
            self.resume_picker.set_path("")
            self._overwrite_once = True  # for this start only: the next one asks again
        else:
            self.resume_picker.set_path(plan.resume)
        return True

    def cancel(self) -> None:
        self._cancel.set()
        self.status.setText("cancelling at the next step…")

    def _on_event(self, item) -> None:
        ev, history, image = item
        self.events.append(ev)
        if isinstance(ev, StartEvent):
            n_batches = max(1, math.ceil(ev.n_train / max(1, self.batch.value())))
            remaining = (ev.epochs - ev.start_epoch) * n_batches
            if self._pbar is not None:
                self._pbar.total = remaining
                self._pbar.set_description(f"Training {ev.model}")
            limit = ev.config.get("max_minutes")
            self.status.setText(
                f"{ev.model} on {ev.device} in {ev.config.get('precision')} "
                f"({recipe_summary(ev.config)}): {ev.n_train} training / "
                f"{ev.n_val} validation items; epochs {ev.start_epoch + 1}-{ev.epochs}"
                + (f" or {limit:g} min" if limit else "")
                + (f"; each step ≈ {ev.step_estimate_s:.1f} s" if ev.step_estimate_s else "")
            )
            for w in ev.warnings:
                show_warning(w)
        elif isinstance(ev, StepEvent):
            if self._pbar is not None:
                self._pbar.update(1)
                self._pbar.set_description(f"epoch {ev.epoch + 1} loss {ev.loss:.4f}")
            self.status.setText(
                progress_text(f"epoch {ev.epoch + 1}, loss {ev.loss:.4f}, batch", ev.batch + 1,
                              ev.n_batches, eta_s=ev.eta_s)
            )
        elif isinstance(ev, EpochEvent):
            self.plot.show_history(history, image)
            dice = ev.metrics.get("dice")
            self.status.setText(
                f"epoch {ev.epoch + 1}: train loss {ev.train_loss:.4f}"
                + (f", val loss {ev.val_loss:.4f}" if ev.val_loss is not None else "")
                + (f", val Dice {dice:.3f}" if dice is not None else "")
                + (" (best)" if ev.is_best else "")
            )
            if self.show_prediction.isChecked():
                self._show_prediction(ev.checkpoint)
            self.epoch_done.emit(ev)
        elif isinstance(ev, DoneEvent):
            from napari_tumorseg.inference.postprocess import describe as describe_postprocessing

            self.last_result = ev
            show_info(f"training done: best {ev.best_checkpoint or ev.last_checkpoint}")
            self.status.setText(
                f"done after {ev.epochs_run} epoch(s)"
                + (" (time limit reached)" if ev.time_limit_reached else "")
                # The folder's name, not its path: a long path cannot wrap and widens the dock.
                + f"; history in {Path(ev.history_csv).parent.name}/{Path(ev.history_csv).name}"
                + (f"; {describe_postprocessing(ev.postprocessing)}" if ev.postprocessing else ""))
            self.resume_picker.set_path(ev.last_checkpoint)
        elif isinstance(ev, CancelledEvent):
            self.last_result = ev
            show_info(f"{ev.message}; resume from {ev.checkpoint}" if ev.checkpoint else ev.message)
            self.status.setText(f"cancelled in epoch {ev.epoch + 1}; checkpoint: {ev.checkpoint}")
            if ev.checkpoint:
                self.resume_picker.set_path(ev.checkpoint)
        elif isinstance(ev, ErrorEvent):
            self.last_result = ev
            keep = f" (last good checkpoint kept: {ev.checkpoint})" if ev.checkpoint else ""
            notify_error(TumorSegError(ev.message + keep))
            self.status.setText(ev.message + keep)

    def _on_finished(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self._worker = None
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _show_prediction(self, checkpoint: str) -> None:
        """Predict the slice in view with the epoch's weights (small: one slice, GUI thread)."""
        name = self.image_layer.currentText()
        if not name or not Path(checkpoint).exists():
            return
        try:
            from napari_tumorseg.inference.predict import Predictor, predict_array

            layer = self.viewer.layers[name]
            z = int(self.viewer.dims.current_step[0]) if layer.data.ndim >= 3 else 0
            predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
            prob = predict_array(predictor, np.asarray(layer.data), slices=[z])
            plane = np.zeros(layer.data.shape[-3:] if layer.data.ndim >= 3 else (1, *layer.data.shape), np.float32)
            plane[z] = prob[z] if prob.ndim == 3 else prob[0, z]
            title = "training preview"
            if title in self.viewer.layers:
                self.viewer.layers[title].data = plane
            else:
                from napari_tumorseg.widgets.grid import geometry_kwargs

                # On the scan's grid, oblique residual included (io.orientation).
                self.viewer.add_image(plane, name=title, colormap="magma", opacity=0.5, blending="additive",
                                      contrast_limits=(0, 1), **geometry_kwargs(layer))
        except Exception as err:  # a preview must never stop training
            show_warning(f"prediction preview skipped: {err}")


def ask_start_or_resume(parent: QWidget, folder: Path, summary: str) -> str | None:
    """"resume", "anew" or None (cancel), asked in a message box (tests replace this)."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Question)
    box.setWindowTitle("Earlier training run")
    box.setText(f"The output folder {folder.name} holds a training run{summary}.")
    box.setInformativeText("Resume it, or start anew? Starting anew replaces its last.pt, "
                           "best.pt and history.csv.")
    resume = box.addButton("Resume", QMessageBox.AcceptRole)
    anew = box.addButton("Start anew", QMessageBox.DestructiveRole)
    box.addButton(QMessageBox.Cancel)
    box.setDefaultButton(resume)
    box.exec_()
    clicked = box.clickedButton()
    return "resume" if clicked is resume else "anew" if clicked is anew else None



