"""Whole-volume inference by overlapping patches, as a generator.

GLIMS is trained on 96^3 patches and, as in its paper, a BraTS volume (240x240x155) is
segmented window by window with overlap 0.8 and Gaussian blending. MONAI's
``SlidingWindowSplitter`` cuts the windows (padding the border ones) and two
``AvgMerger`` s accumulate the Gaussian-weighted logits and the weights, whose ratio is
the blended map, cropped back to the volume. :func:`sliding_window_steps` yields after
every batch of windows, so a caller can report progress and cancel between batches on
its own thread. Memory stays bounded: the volume and the merged output live on the CPU,
only the windows in flight go to the compute device, and logits are blended in float32.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from napari_tumorseg.errors import TumorSegError, first_line
from napari_tumorseg.precision import resolve

ProgressCallback = Callable[[int, int], None]
_ACTIVATIONS = ("sigmoid", "softmax", "none")
_MODES = ("gaussian", "constant")
# MONAI's sliding_window_inference default: a Gaussian of sigma = 0.125 x window side.
_SIGMA_SCALE = 0.125


def _roi_tuple(roi_size: int | Sequence[int]) -> tuple[int, int, int]:
    roi = (int(roi_size),) * 3 if isinstance(roi_size, (int, np.integer)) else tuple(int(r) for r in roi_size)
    if len(roi) != 3 or any(r <= 0 for r in roi):
        raise TumorSegError(f"roi_size must be one or three positive integers, got {roi_size!r}")
    return roi  # type: ignore[return-value]


def _splitter(roi: Sequence[int], overlap: float):
    from monai.inferers import SlidingWindowSplitter

    return SlidingWindowSplitter(patch_size=tuple(roi), overlap=float(overlap), pad_mode="constant")


def _locations(spatial_shape: Sequence[int], roi: Sequence[int], overlap: float) -> list[tuple[int, ...]]:
    # A tensor without channels costs nothing to pad or cut: only the positions come out.
    empty = torch.empty((1, 0, *(int(s) for s in spatial_shape)))
    return [tuple(loc) for _, loc in _splitter(roi, overlap)(empty)]


def count_windows(
    spatial_shape: Sequence[int], roi_size: int | Sequence[int], overlap: float = 0.8, batch: int = 1
) -> int:
    """Number of windows :func:`sliding_window_steps` runs for a volume of this shape."""
    return len(_locations(spatial_shape, _roi_tuple(roi_size), overlap)) * int(batch)


def _model_device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _check(volume, roi_size, overlap, sw_batch_size, mode, activation) -> tuple[torch.Tensor, tuple[int, int, int]]:
    roi = _roi_tuple(roi_size)
    if not 0.0 <= float(overlap) < 1.0:
        raise TumorSegError(f"overlap must be in [0, 1), got {overlap}")
    if int(sw_batch_size) < 1:
        raise TumorSegError(f"sw_batch_size must be at least 1, got {sw_batch_size}")
    if mode not in _MODES:
        raise TumorSegError(f"mode must be one of {', '.join(_MODES)}, got {mode!r}")
    if activation not in _ACTIVATIONS:
        raise TumorSegError(f"activation must be one of {', '.join(_ACTIVATIONS)}, got {activation!r}")
    x = torch.from_numpy(np.ascontiguousarray(volume)) if isinstance(volume, np.ndarray) else volume
    if not isinstance(x, torch.Tensor):
        raise TumorSegError(f"volume must be a numpy array or torch tensor, got {type(volume).__name__}")
    if x.ndim not in (4, 5):
        raise TumorSegError(f"volume must be (C, Z, Y, X) or (N, C, Z, Y, X), got shape {tuple(x.shape)}")
    if any(s == 0 for s in x.shape):
        raise TumorSegError(f"volume is empty: shape {tuple(x.shape)}")
    return x, roi


def sliding_window_steps(
    model: nn.Module,
    volume: torch.Tensor | np.ndarray,
    roi_size: int | Sequence[int],
    overlap: float = 0.8,
    sw_batch_size: int = 1,
    mode: str = "gaussian",
    device: torch.device | str | None = None,
    activation: str = "sigmoid",
    amp: bool | None = None,
    precision=None,
) -> Iterator[tuple[int, int, torch.Tensor | None]]:
    """Run the windows batch by batch: yields ``(done, total, None)`` after each batch and
    ends with ``(total, total, probabilities)``.

    ``volume`` is (C, Z, Y, X) or (N, C, Z, Y, X); the result has the same layout with the
    model's output channels, float32 on the CPU. ``activation`` is applied after blending
    the logits: "sigmoid" for region outputs (GLIMS), "softmax" for classes, "none" for logits.
    ``device`` is where the windows run (default: the model's device); ``precision``
    ("auto", "fp32", "bf16" or a resolved one; :func:`napari_tumorseg.precision.resolve`) is
    the autocast they run under (auto: fp16 on CUDA, bf16 on a CPU with native bf16, else
    fp32; ``amp=False`` makes auto fp32); the logits are blended in float32. The model is in eval mode while the
    generator runs and is restored when it ends or is closed.
    """
    from monai.data.utils import compute_importance_map
    from monai.inferers.merger import AvgMerger

    x, roi = _check(volume, roi_size, overlap, sw_batch_size, mode, activation)
    unbatched = x.ndim == 4
    x = (x.unsqueeze(0) if unbatched else x).detach().to("cpu", torch.float32)
    sw_device = torch.device(device) if device is not None else _model_device(model)
    prec = resolve(precision, sw_device, amp=amp)
    spatial = tuple(x.shape[2:])
    locations = _locations(spatial, roi, overlap)
    # The splitter pads border windows: the mergers span the padded grid and crop back.
    padded = tuple(max(loc[d] + roi[d] for loc in locations) for d in range(3))
    weight = compute_importance_map(roi, mode=mode, sigma_scale=_SIGMA_SCALE, device="cpu").float()
    total = len(locations) * x.shape[0]
    values = weights = None
    done = 0

    was_training = model.training
    model.eval()
    try:
        windows = ((patch, loc) for patch, loc in _splitter(roi, overlap)(x))
        while True:
            batch = [w for _, w in zip(range(int(sw_batch_size)), windows)]
            if not batch:
                break
            patches = torch.cat([p for p, _ in batch]).to(sw_device)
            try:
                with torch.inference_mode():
                    out = prec.run(model, patches)
            except RuntimeError as err:
                raise TumorSegError(f"sliding-window inference failed: {first_line(err)}") from err
            if isinstance(out, (list, tuple)):  # deep-supervision nets: the full-resolution head
                out = out[0]
            out = out.float().cpu()  # blend in float32 (prec.run gave float32 already)
            n = x.shape[0]
            if values is None:
                shape = (n, out.shape[1], *padded)
                # int32 counts: at overlap 0.8 a voxel lies in up to 125 windows, more above.
                values = AvgMerger(shape, cropped_shape=(n, out.shape[1], *spatial), count_dtype=torch.int32)
                weights = AvgMerger((n, 1, *padded), cropped_shape=(n, 1, *spatial), count_dtype=torch.int32)
            # A batch holds one window per image of the input batch at each location.
            for k, (_, loc) in enumerate(batch):
                chunk = out[k * n:(k + 1) * n]
                values.aggregate(chunk * weight, loc)
                weights.aggregate(weight.expand(chunk.shape[0], 1, *roi), loc)
            done += len(batch) * n
            if done < total:
                yield done, total, None
        blended = values.finalize() / weights.finalize().clamp_min(1e-12)
    finally:
        model.train(was_training)
    blended = blended.as_tensor() if hasattr(blended, "as_tensor") else torch.as_tensor(blended)
    if activation == "sigmoid":
        blended = blended.sigmoid_()
    elif activation == "softmax":
        blended = blended.softmax(dim=1)
    yield total, total, blended[0] if unbatched else blended


def sliding_window_predict(
    model: nn.Module,
    volume: torch.Tensor | np.ndarray,
    roi_size: int | Sequence[int],
    progress: ProgressCallback | None = None,
    **options,
) -> torch.Tensor:
    """:func:`sliding_window_steps` (same ``options``) run to the end;
    ``progress(done, total)`` after each batch of windows."""
    for done, total, result in sliding_window_steps(model, volume, roi_size, **options):
        if progress is not None:
            progress(done, total)
        if result is not None:
            return result
    raise AssertionError("sliding_window_steps ended without a result")  # pragma: no cover
