"""Prediction core: a checkpoint and a volume in, probabilities on the source grid out.

One generator, :func:`predict_volume`, drives the napari Predict widget (through
``thread_worker``), the ``tumorseg predict`` CLI and the tests, so they all share the
same preprocessing, batching, cancel and progress semantics:

* 2D models (unet, lintunet, hybrid_unet, setr, segformer) run slice by slice, ``batch_size``
  slices per forward. A ``"progress"`` event follows every batch with the z indices just
  finished and their probability planes, already back on the source in-plane grid, so a
  viewer can show slices as they finish.
* 3D models (GLIMS) run through :func:`~napari_tumorseg.inference.sliding_window.sliding_window_steps`
  (MONAI's window splitter and mergers, Gaussian blending, ``overlap`` 0.8 as in the
  paper) on the calling thread; progress is counted in windows.
* The last event is ``"done"`` with the full probability map, or ``"cancelled"`` (with the
  slices finished so far) when ``cancel()`` turned true; cancel is polled before every batch
  (2D) or window batch (3D).

Probability maps are float32 in 0-1 on the source grid (``Volume.spatial_shape``):

* ``binary`` models: (z, y, x) tumour probability (sigmoid);
* ``regions`` models (GLIMS): (3, z, y, x) WT / TC / ET (sigmoid, nested regions);
* ``multiclass`` with 2 classes (SegFormer: background, tumour): (z, y, x) softmax tumour
  probability; more classes: (K, z, y, x) softmax.

Normalisation statistics (z-score) always come from the whole volume, as in training, even
when only some slices are predicted. Slices whose raw intensities are constant (the empty
top and bottom slices of a skull-stripped BraTS volume) cannot show a tumour: with
``skip_empty`` (default) they are not sent to the model and get probability 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from napari_tumorseg import output_kinds
from napari_tumorseg.content_key import content_key
from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.io.volume import Volume
from napari_tumorseg.precision import prefer_channels_last
from napari_tumorseg.training.preprocessing import Preprocessing

CancelFn = Callable[[], bool]
SliceSpec = range | list[int] | tuple[int, ...] | int | None

#: Class names that mean "no tumour" for the case-level aggregate of a classifier.
NO_TUMOUR_NAMES = ("no tumour", "no tumor", "notumor", "no_tumor", "no-tumour", "no-tumor",
                   "none", "healthy", "normal")


# ----------------------------------------------------------------------------- events


@dataclass
class PredictionEvent:
    """One step of a prediction run.

    ``kind``: ``"start"`` (once, before the first forward), ``"progress"`` (after each batch),
    ``"done"`` or ``"cancelled"`` (exactly one of them ends every run).

    ``slices`` / ``planes`` (progress, 2D): the z indices finished by this batch and their
    probabilities in the map's layout restricted to them, so that
    ``prob[..., ev.slices, :, :] = ev.planes`` updates a cached map of either layout.
    ``probabilities`` (done; cancelled: what was finished) is the full map, zero on slices
    that were not predicted; ``slices`` then lists every predicted z index.
    """

    kind: str
    done: int = 0
    total: int = 0
    unit: str = "slices"  # "slices" (2D) or "windows" (3D)
    slices: list[int] = field(default_factory=list)
    planes: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    elapsed_s: float = 0.0
    message: str = ""

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


# ----------------------------------------------------------------------------- predictor


def _default_threads() -> int:
    from napari_tumorseg.training.engine import default_threads

    return default_threads()


class Predictor:
    """A model ready for inference: device, eval mode, preprocessing and output meaning.

    Build it with :meth:`from_checkpoint` (the normal way) or :meth:`from_registry` (a
    registry model with a weights file). ``device``: ``auto`` (CUDA, then MPS, then CPU),
    ``cpu``, ``cuda``, ``cuda:N``. ``precision``: ``auto`` (default: bf16 autocast on a CPU
    with native bf16, fp32 on other CPUs, fp16 autocast on CUDA), ``fp32`` or ``bf16``; see
    :func:`napari_tumorseg.precision.resolve` (``amp=False``, the older switch, makes auto fp32).
    Probabilities are always computed from float32 logits.
    """

    def __init__(
        self,
        model: nn.Module,
        model_name: str,
        preprocessing: dict[str, Any] | None = None,
        class_names: list[str] | None = None,
        config: dict[str, Any] | None = None,
        device: str | torch.device = "auto",
        amp: bool | None = None,
        source: str = "",
        precision=None,
    ) -> None:
        from napari_tumorseg.models import get_info
        from napari_tumorseg.training.engine import pick_device

        self.info = get_info(model_name)
        self.model_name = model_name
        self.config = dict(config or {})
        self.device = device if isinstance(device, torch.device) else pick_device(str(device))
        self.model = model.to(self.device).eval()
        self.prep = Preprocessing.of(preprocessing or default_preprocessing_for(model_name, self.config))
        self.kind = output_kinds.output_kind(self.prep.target)
        self.output_kind = self.kind.name
        self.dims = self.prep.dims
        self.class_names = list(class_names or self.prep.class_names or self.info.class_names)
        self._amp_switch = amp
        self.set_precision(precision)
        self.source = source
        # NHWC on a CPU (precision.prefer_channels_last); a model that cannot take it falls
        # back to NCHW on its first forward.
        self.channels_last = prefer_channels_last(self.model, self.device, self.dims)
        self._norm_cache: tuple | None = None  # (key, normalised volume): see normalized()
        #: The rule chosen on the model's validation cases (inference.postprocess), or None.
        self.postprocessing: dict | None = None

    # -- cleanup of a whole map

    @property
    def _rule(self) -> str | None:
        from napari_tumorseg.inference import postprocess

        rule = (self.postprocessing or {}).get("rule")
        return rule if rule in postprocess.DESCRIPTIONS and self.kind.name in ("binary", "multiclass") else None

    @property
    def cleanup(self) -> str:
        """What :meth:`clean` removes from a whole map's labels ("" when nothing)."""
        from napari_tumorseg.inference import postprocess

        if self.kind.cleanup:
            return self.kind.cleanup
        rule = self._rule
        return postprocess.DESCRIPTIONS[rule] if rule else ""

    def clean(self, labels: np.ndarray) -> tuple[np.ndarray, int]:
        """Labels of a whole predicted map without what this model's rule removes (its
        kind's: oedema without a core; or the rule chosen on its validation cases), and how
        many components went."""
        if self.kind.cleanup:
            return self.kind.clean(labels)
        rule = self._rule
        if rule is None:
            return labels, 0
        from napari_tumorseg.inference import postprocess

        return postprocess.apply_rule(labels, rule)

    # -- construction

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", amp: bool | None = None,
                        precision=None) -> "Predictor":
        """Load a napari-tumorseg checkpoint (any model of the registry)."""
        from napari_tumorseg.models.checkpoint import load_checkpoint

        model, ckpt = load_checkpoint(path, map_location="cpu", build=True)
        predictor = cls(model, ckpt["model_name"], ckpt.get("preprocessing") or None,
                        ckpt.get("class_names") or None, ckpt.get("config"), device, amp, str(path),
                        precision=precision)
        choice = (ckpt.get("extra") or {}).get("postprocessing")
        predictor.postprocessing = dict(choice) if isinstance(choice, dict) else None
        return predictor

    @classmethod
    def from_registry(
        cls,
        name: str,
        weights: str | Path | None = None,
        device: str = "auto",
        amp: bool | None = None,
        preprocessing: dict[str, Any] | None = None,
        in_channels: int | None = None,
        out_channels: int | None = None,
        precision=None,
        **config: Any,
    ) -> "Predictor":
        """A registry model with ``weights`` (our checkpoint or a bare state dict).

        Without a preprocessing dict the paper's defaults are used: in-plane resize to the
        model's input size for 2D models, z-score or 0-1 scaling chosen from the data type.
        """
        from napari_tumorseg.models import create_model, get_info
        from napari_tumorseg.models.checkpoint import load_pretrained

        info = get_info(name)
        cfg = {**info.default_config, **config}
        model = create_model(name, in_channels=in_channels, out_channels=out_channels, **cfg)
        if weights is not None:
            load_pretrained(model, weights)
        prep = preprocessing or default_preprocessing_for(
            name, cfg, in_channels if in_channels is not None else info.in_channels)
        return cls(model, name, prep, None, cfg, device, amp, str(weights or ""), precision=precision)

    # -- what the output means

    @property
    def is_classifier(self) -> bool:
        return not self.kind.dense

    @property
    def in_channels(self) -> int:
        return self.prep.channels

    @property
    def channel_names(self) -> list[str] | None:
        """Names of the probability map's leading channels; None for a single (z, y, x) map."""
        return self.kind.channel_names(self.class_names, self.num_classes)

    @property
    def num_classes(self) -> int:
        return int(self.prep.num_classes or len(self.class_names) or self.info.out_channels)

    def label_names(self) -> dict[int, str]:
        """Label value -> name for the labels :func:`probabilities_to_labels` produces."""
        return self.kind.label_names(self.class_names, self.num_classes)

    def label_colors(self) -> dict[int, tuple[float, ...]] | None:
        """RGBA (0-1) per label value for region maps, else None (napari's defaults)."""
        colors = self.kind.label_colors()
        return None if colors is None else {k: v for k, v in colors.items() if isinstance(k, int) and k}

    def roi_size(self) -> tuple[int, int, int]:
        """Sliding-window size of a 3D model: its training patch, else its input size."""
        roi = self.prep.patch_size or self.config.get("img_size") or list(self.info.input_size)
        if isinstance(roi, int):
            roi = [roi] * 3
        return tuple(int(r) for r in roi)  # type: ignore[return-value]

    def describe(self) -> str:
        kind = self.kind.describe(self.class_names, self.num_classes)
        return f"{self.model_name} ({self.dims}D, {kind}) on {self.device.type}, {self.precision.name}"

    def set_precision(self, precision=None) -> None:
        """Choose the precision ("auto", "fp32", "bf16", or a resolved Precision)."""
        from napari_tumorseg.precision import resolve

        self.precision = resolve(precision, self.device, amp=self._amp_switch)
        self.amp = self.precision.enabled

    # -- forward

    def normalized(self, czyx: np.ndarray) -> np.ndarray:
        """(c, z, y, x) with the model's channels and intensities normalised over the whole
        volume (training's rule), kept for the next call on the same volume (recognised by
        content): predicting the current slice paid for normalising every slice, 0.45 s of a
        0.47 s call on a 155-slice BraTS case. Read-only for the caller."""
        key = (content_key(czyx), self.prep)
        if self._norm_cache is None or self._norm_cache[0] != key:
            self._norm_cache = None  # the old volume's memory goes before the new one is made
            self._norm_cache = (key, _normalized(czyx, self.prep))
        return self._norm_cache[1]

    def forget_volume(self) -> None:
        """Drop the kept normalised volume (its memory; benchmarks timing a first call)."""
        self._norm_cache = None

    def _forward(self, x: torch.Tensor):
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.precision.run(self.model, x)

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Model probabilities for an (N, C, ...) batch, float32 on the CPU.

        binary -> (N, ...); regions -> (N, 3, ...); multiclass -> (N, ...) tumour
        probability for 2 classes, else (N, K, ...); classes -> (N, K).
        """
        x = batch.to(self.device, non_blocking=True)
        try:
            out = self._forward(x)
        except RuntimeError:
            if not self.channels_last:
                raise
            self.channels_last = False
            self.model.to(memory_format=torch.contiguous_format)
            out = self._forward(x)
        if isinstance(out, (list, tuple)):  # deep supervision: the full-resolution head
            out = out[0]
        if isinstance(out, dict):
            out = out.get("logits", next(iter(out.values())))
        p = self.kind.activate(out.float())
        if self.kind.dense and self.channel_names is None:
            p = p[:, 0]
        return p.cpu()


def default_preprocessing_for(name: str, config: dict | None = None, channels: int | None = None) -> Preprocessing:
    """The paper's preprocessing for a registry model used without a checkpoint."""
    from napari_tumorseg.models import get_info

    info = get_info(name)
    ch = int(channels if channels is not None else info.in_channels)
    fields = output_kinds.output_kind(info.output).target_settings((), None, int(info.out_channels))
    fields.pop("region_convention", None)  # no labels to guess from: the BraTS default
    if info.dims == 2:
        return Preprocessing.for_model(2, info.input_size[-2:], ch, info.output,
                                       class_names=tuple(info.class_names), **fields)
    img = (config or {}).get("img_size") or info.input_size
    return Preprocessing.for_model(3, None, ch, info.output, class_names=tuple(info.class_names),
                                   patch_size=img, **fields)


def load_predictor(
    checkpoint: str | Path, device: str = "auto", model: str | None = None, amp: bool | None = None,
    precision=None,
) -> Predictor:
    """A Predictor from our checkpoint, or from a bare weights file when ``model`` names it."""
    if model:
        return Predictor.from_registry(model, checkpoint, device=device, amp=amp, precision=precision)
    return Predictor.from_checkpoint(checkpoint, device=device, amp=amp, precision=precision)


# ----------------------------------------------------------------------------- inputs


def _as_czyx(volume: Volume | np.ndarray) -> np.ndarray:
    from napari_tumorseg.training.preprocessing import as_czyx

    from napari_tumorseg.input_checks import require_finite, source_name

    if isinstance(volume, Volume):
        if volume.kind == "labels":
            raise TumorSegError(f"{volume.name} is a labels volume: predict on an image")
        # NaN voxels would give NaN probabilities, i.e. "no tumour": refused, never blanked.
        require_finite(volume.data, source_name(volume))
        return as_czyx(volume.data, "czyx" if volume.has_channels else "zyx")
    arr = np.asarray(volume)
    if arr.ndim not in (2, 3, 4) or arr.size == 0:
        raise TumorSegError(f"cannot predict on an array of shape {arr.shape}: give (z, y, x) or (c, z, y, x)")
    require_finite(arr, "the input array")
    # A 3-D array is a stack of slices here, never an RGB image: (z, y, x).
    return as_czyx(arr, {2: "yx", 3: "zyx", 4: "czyx"}[arr.ndim])


def _slice_list(slices: SliceSpec, n_z: int) -> list[int]:
    if slices is None:
        return list(range(n_z))
    if isinstance(slices, (int, np.integer)):
        slices = [int(slices)]
    out = sorted({int(z) for z in slices})
    if not out:
        raise TumorSegError("no slices to predict")
    bad = [z for z in out if not 0 <= z < n_z]
    if bad:
        raise TumorSegError(f"slice {bad[0]} is outside the volume (0-{n_z - 1})")
    return out


def _normalized(czyx: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Channels adapted and intensities normalised over the whole volume (training's statistics)."""
    from napari_tumorseg.channels import ChannelPlan, fit_channels
    from napari_tumorseg.intensity import normalize_input

    prep = Preprocessing.of(prep)
    img = fit_channels(czyx, ChannelPlan.from_preprocessing(prep))
    return normalize_input(img, prep, czyx.dtype)


def _empty_slices(czyx: np.ndarray) -> np.ndarray:
    """(z,) bool: slices whose raw intensities are constant over every channel."""
    flat = czyx.reshape(czyx.shape[0], czyx.shape[1], -1)
    return np.all(flat.max(axis=2) == flat.min(axis=2), axis=0)


class _Threads:
    """Run torch on ``n`` intra-op threads (default: all cores but one, for the GUI thread)."""

    def __init__(self, n: int | None, device: torch.device) -> None:
        self.n = n if n is not None else (_default_threads() if device.type == "cpu" else None)
        self.old = torch.get_num_threads()

    def __enter__(self):
        if self.n:
            torch.set_num_threads(int(self.n))
        return self

    def __exit__(self, *exc) -> None:
        if self.n:
            torch.set_num_threads(self.old)


# ----------------------------------------------------------------------------- 2D


def _map_shape(predictor: Predictor, spatial: tuple[int, int, int]) -> tuple[int, ...]:
    names = predictor.channel_names
    return (len(names), *spatial) if names else tuple(spatial)


def _iter_2d(
    predictor: Predictor,
    czyx: np.ndarray,
    zs: list[int],
    batch_size: int,
    cancel: CancelFn | None,
    skip_empty: bool,
    classify: bool = False,
) -> Iterator[PredictionEvent]:
    from napari_tumorseg.training.preprocessing import apply_preprocessing, restore_spatial

    prep = predictor.prep
    t0 = time.perf_counter()
    n_z, h, w = czyx.shape[1:]
    norm = predictor.normalized(czyx)
    # Normalised already: only the in-plane resize / pad of each batch remains to do.
    batch_prep = prep.replace(normalize="none", channel_mode="as_is")
    empty = _empty_slices(czyx) if skip_empty and not classify else np.zeros(n_z, bool)
    if classify:
        out = np.full((n_z, len(predictor.class_names)), np.nan, np.float32)
    else:
        out = np.zeros(_map_shape(predictor, (n_z, h, w)), np.float32)
    done: list[int] = []
    total = len(zs)
    yield PredictionEvent("start", 0, total, "slices", message=predictor.describe())
    for start in range(0, total, int(batch_size)):
        if cancel is not None and cancel():
            yield PredictionEvent("cancelled", len(done), total, "slices", list(done), None, out,
                                  time.perf_counter() - t0, f"cancelled after {len(done)} of {total} slices")
            return
        batch = zs[start:start + int(batch_size)]
        run = [z for z in batch if not empty[z]]
        if classify:
            planes = np.zeros((len(batch), out.shape[1]), np.float32)
        else:
            planes = np.zeros(_map_shape(predictor, (len(batch), h, w)), np.float32)
        if run:
            x = apply_preprocessing(norm[:, run], batch_prep, layout="czyx")  # (C, n, h', w')
            p = predictor.probabilities(torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2, 3))))
            p = p.numpy()
            where = [batch.index(z) for z in run]
            if classify:
                planes[where] = p
            else:
                # (n, h', w') -> (1, n, ...) or (n, K, h', w') -> (K, n, ...): restore_spatial's layout.
                p = p[None] if p.ndim == 3 else p.transpose(1, 0, 2, 3)
                p = np.clip(restore_spatial(p, (h, w), prep), 0.0, 1.0)
                if planes.ndim == 3:
                    planes[where] = p[0]
                else:
                    planes[:, where] = p
        if not classify and planes.ndim == 4 and not predictor.kind.sigmoid:
            skipped = [i for i, z in enumerate(batch) if empty[z]]
            planes[0, skipped] = 1.0  # an empty slice is all background
        if classify:
            out[batch] = planes
        else:
            out[..., batch, :, :] = planes
        done += batch
        yield PredictionEvent("progress", len(done), total, "slices", list(batch), planes, None,
                              time.perf_counter() - t0)
    yield PredictionEvent("done", total, total, "slices", list(zs), None, out, time.perf_counter() - t0,
                          f"{total} slices in {time.perf_counter() - t0:.1f} s")


# ----------------------------------------------------------------------------- 3D


def _iter_3d(
    predictor: Predictor,
    czyx: np.ndarray,
    zs: list[int],
    overlap: float,
    window_batch: int,
    cancel: CancelFn | None,
) -> Iterator[PredictionEvent]:
    from napari_tumorseg.inference.sliding_window import count_windows, sliding_window_steps
    from napari_tumorseg.training.preprocessing import apply_preprocessing

    t0 = time.perf_counter()
    n_z = czyx.shape[1]
    image = apply_preprocessing(czyx, predictor.prep, layout="czyx")
    roi = predictor.roi_size()
    # A slice subset runs on the slab that holds it plus half a window of context each side.
    lo, hi = zs[0], zs[-1] + 1
    if (lo, hi) != (0, n_z):
        lo, hi = max(0, lo - roi[0] // 2), min(n_z, hi + roi[0] // 2)
    slab = image[:, lo:hi]
    total = count_windows(slab.shape[1:], roi, overlap)
    yield PredictionEvent("start", 0, total, "windows", message=predictor.describe())

    steps = sliding_window_steps(predictor.model, slab, roi, overlap=overlap, sw_batch_size=window_batch,
                                 device=predictor.device, activation="none",
                                 precision=predictor.precision)
    done, logits = 0, None
    try:
        # Cancel is checked before the first window batch and after each one.
        while not (cancel is not None and cancel()):
            done, _, logits = next(steps)
            if logits is not None:
                break
            yield PredictionEvent("progress", done, total, "windows", elapsed_s=time.perf_counter() - t0)
    finally:
        steps.close()  # a cancel, or a consumer that stops early, ends the windows here
    if logits is None:
        out = np.zeros(_map_shape(predictor, czyx.shape[1:]), np.float32)
        yield PredictionEvent("cancelled", done, total, "windows", [], None, out, time.perf_counter() - t0,
                              f"cancelled after {done} of {total} windows")
        return
    yield PredictionEvent("progress", total, total, "windows", elapsed_s=time.perf_counter() - t0)
    # Blended logits, activated once: the same activation as the 2D path.
    prob = predictor.kind.activate(logits[None])[0].numpy()  # (K, z, y, x)
    if predictor.channel_names is None:
        prob = prob[0]
    out = np.zeros(_map_shape(predictor, czyx.shape[1:]), np.float32)
    rel = [z - lo for z in zs]
    out[..., zs, :, :] = prob[..., rel, :, :]
    yield PredictionEvent("done", total, total, "windows", list(zs), None, out, time.perf_counter() - t0,
                          f"{total} windows in {time.perf_counter() - t0:.1f} s")


# ----------------------------------------------------------------------------- public API


def predict_volume(
    predictor: Predictor,
    volume: Volume | np.ndarray,
    slices: SliceSpec = None,
    batch_size: int = 8,
    overlap: float = 0.8,
    cancel: CancelFn | None = None,
    skip_empty: bool = True,
    window_batch: int = 1,
    threads: int | None = None,
) -> Iterator[PredictionEvent]:
    """Predict ``volume`` ((z, y, x), (c, z, y, x) or a Volume); yield :class:`PredictionEvent`.

    ``slices``: z indices to predict (None: all). 2D models: ``batch_size`` slices per
    forward. 3D models: sliding window with ``overlap``, ``window_batch`` windows per forward.
    ``threads``: torch intra-op threads on CPU (default: all cores but one, restored after).
    """
    if predictor.is_classifier:
        raise TumorSegError(f"{predictor.model_name} is a classifier: use classify_slices")
    if int(batch_size) < 1:
        raise TumorSegError(f"batch size must be at least 1, got {batch_size}")
    if not 0.0 <= float(overlap) < 1.0:
        raise TumorSegError(f"overlap must be in [0, 1), got {overlap}")
    czyx = _as_czyx(volume)
    zs = _slice_list(slices, czyx.shape[1])
    with _Threads(threads, predictor.device):
        if predictor.dims == 3:
            yield from _iter_3d(predictor, czyx, zs, float(overlap), int(window_batch), cancel)
        else:
            yield from _iter_2d(predictor, czyx, zs, int(batch_size), cancel, skip_empty)


def _drain(events: Iterable[PredictionEvent]) -> PredictionEvent:
    last = None
    for last in events:
        pass
    if last is None or last.kind == "cancelled":
        raise TumorSegError("prediction cancelled")
    return last


def predict_array(
    predictor: Predictor, volume: Volume | np.ndarray, slices: SliceSpec = None, **kwargs: Any
) -> np.ndarray:
    """The probability map of :func:`predict_volume`, run to the end."""
    return _drain(predict_volume(predictor, volume, slices, **kwargs)).probabilities


def probabilities_to_labels(prob: np.ndarray, threshold: float = 0.5,
                            output_kind: str | output_kinds.OutputKind = "binary") -> np.ndarray:
    """uint8 labels from a probability map; no model call, so a threshold slider is cheap.

    binary / 2-class multiclass (z, y, x): 1 where prob > threshold. regions (3, z, y, x):
    the BraTS-style map of :func:`napari_tumorseg.brats.regions_to_labels` (1 edema,
    2 core, 3 enhancing). multiclass (K, z, y, x): the arg-max class (threshold unused).
    """
    return output_kinds.output_kind(output_kind).to_labels(prob, threshold)


# ----------------------------------------------------------------------------- classifier


@dataclass
class CaseClassification:
    """Case-level tumour type from per-slice probabilities (see :func:`aggregate_case`)."""

    class_names: list[str]
    probabilities: np.ndarray  # (K,) case-level, sums to 1
    label: str
    probability: float
    slices_used: list[int]
    policy: str

    def text(self) -> str:
        return f"{self.label} ({self.probability:.0%}, {len(self.slices_used)} slice(s): {self.policy})"


def iter_classify_slices(
    predictor: Predictor,
    volume: Volume | np.ndarray,
    slices: SliceSpec = None,
    batch_size: int = 8,
    cancel: CancelFn | None = None,
    threads: int | None = None,
) -> Iterator[PredictionEvent]:
    """Like :func:`predict_volume` for a classifier: ``planes`` are (n, K) class probabilities,
    the final ``probabilities`` (z, K) with NaN rows for slices not classified."""
    if not predictor.is_classifier:
        raise TumorSegError(f"{predictor.model_name} segments; classify needs a classifier checkpoint")
    if int(batch_size) < 1:
        raise TumorSegError(f"batch size must be at least 1, got {batch_size}")
    czyx = _as_czyx(volume)
    zs = _slice_list(slices, czyx.shape[1])
    with _Threads(threads, predictor.device):
        yield from _iter_2d(predictor, czyx, zs, int(batch_size), cancel, False, classify=True)


def classify_slices(
    predictor: Predictor, volume: Volume | np.ndarray, slices: SliceSpec = None, batch_size: int = 8,
    cancel: CancelFn | None = None,
) -> np.ndarray:
    """(n, K) class probabilities of the requested slices (ascending z), K = predictor.class_names."""
    last = _drain(iter_classify_slices(predictor, volume, slices, batch_size, cancel))
    return last.probabilities[last.slices]


def aggregate_case(
    slice_probs: np.ndarray, class_names: list[str], slices: list[int] | None = None
) -> CaseClassification:
    """Case-level class probabilities: the mean over the tumour-bearing slices.

    A slice is tumour-bearing when its most probable class is not the "no tumour" class
    (:data:`NO_TUMOUR_NAMES`). Averaging over those only keeps the many tumour-free slices
    of a volume from voting "no tumour" for a case that has one. When no slice bears a
    tumour (or the classifier has no "no tumour" class), the mean is over all slices.
    """
    p = np.asarray(slice_probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] != len(class_names):
        raise TumorSegError(f"expected (slices, {len(class_names)}) probabilities, got {p.shape}")
    slices = list(range(p.shape[0])) if slices is None else list(slices)
    lower = [c.lower() for c in class_names]
    none_idx = next((i for i, c in enumerate(lower) if c in NO_TUMOUR_NAMES), None)
    use = np.ones(p.shape[0], bool)
    policy = "mean over all slices"
    if none_idx is not None:
        bearing = p.argmax(axis=1) != none_idx
        if bearing.any():
            use, policy = bearing, "mean over tumour-bearing slices"
        else:
            policy = "no slice bears a tumour: mean over all slices"
    case = p[use].mean(axis=0)
    case = case / case.sum()
    k = int(case.argmax())
    return CaseClassification(list(class_names), case.astype(np.float32), class_names[k], float(case[k]),
                              [s for s, u in zip(slices, use) if u], policy)


def classify_case(
    predictor: Predictor, volume: Volume | np.ndarray, slices: SliceSpec = None, batch_size: int = 8
) -> CaseClassification:
    """Classify every (or the given) slice and aggregate them with :func:`aggregate_case`."""
    czyx = _as_czyx(volume)
    zs = _slice_list(slices, czyx.shape[1])
    probs = classify_slices(predictor, czyx, zs, batch_size)
    return aggregate_case(probs, predictor.class_names, zs)


def prediction_reuse(old_source, old_shape, old_predictor, source, shape, predictor) -> str:
    """What a new prediction does with the one already shown (the Predict dock's rule).

    * ``"extend"``: same scan, same model, same output shape — the new slices are added to
      the cached probabilities (predicting slice by slice builds one map);
    * ``"replace"``: same scan, another model or output — a new cache, the same two layers
      (derived voxels are rebuilt, voxels the user edited stay: see ``user_edits``);
    * ``"new"``: another scan — new layers; the old ones stay as they are.
    """
    if old_source is None or old_source is not source:
        return "new"
    if old_predictor is predictor and tuple(old_shape) == tuple(shape):
        return "extend"
    return "replace"
