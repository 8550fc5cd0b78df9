"""Whole-volume inference by overlapping patches (MONAI ``sliding_window_inference``).

GLIMS is trained on 96^3 patches and, as in its paper, a BraTS volume (240x240x155) is
segmented window by window with overlap 0.8 and Gaussian blending. Memory stays bounded:
the volume and the blended output live on the CPU, only the windows in flight go to the
compute device, and logits are blended in float32 before the final activation.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
from monai.data.utils import dense_patch_slices
from monai.inferers import sliding_window_inference

from napari_tumorseg.errors import TumorSegError, first_line

ProgressCallback = Callable[[int, int], None]
_ACTIVATIONS = ("sigmoid", "softmax", "none")
_MODES = ("gaussian", "constant")


def _roi_tuple(roi_size: int | Sequence[int]) -> tuple[int, int, int]:
    roi = (int(roi_size),) * 3 if isinstance(roi_size, (int, np.integer)) else tuple(int(r) for r in roi_size)
    if len(roi) != 3 or any(r <= 0 for r in roi):
        raise TumorSegError(f"roi_size must be one or three positive integers, got {roi_size!r}")
    return roi  # type: ignore[return-value]


def _scan_interval(image_size: Sequence[int], roi: Sequence[int], overlap: float) -> tuple[int, ...]:
    # The same rule as MONAI's sliding_window_inference, so the window count matches it.
    out = []
    for size, r in zip(image_size, roi):
        out.append(r if r == size else max(int(r * (1 - overlap)), 1))
    return tuple(out)


def count_windows(
    spatial_shape: Sequence[int], roi_size: int | Sequence[int], overlap: float = 0.8, batch: int = 1
) -> int:
    """Number of windows :func:`sliding_window_predict` runs for a volume of this shape."""
    roi = _roi_tuple(roi_size)
    image_size = tuple(max(int(s), r) for s, r in zip(spatial_shape, roi))
    slices = dense_patch_slices(image_size, roi, _scan_interval(image_size, roi, overlap))
    return len(slices) * int(batch)


def _model_device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def sliding_window_predict(
    model: nn.Module,
    volume: torch.Tensor | np.ndarray,
    roi_size: int | Sequence[int],
    overlap: float = 0.8,
    sw_batch_size: int = 1,
    mode: str = "gaussian",
    device: torch.device | str | None = None,
    progress: ProgressCallback | None = None,
    activation: str = "sigmoid",
    amp: bool | None = None,
) -> torch.Tensor:
    """Probabilities for a whole volume, patch by patch.

    ``volume`` is (C, Z, Y, X) or (N, C, Z, Y, X); the result has the same layout with the
    model's output channels, float32 on the CPU. ``activation`` is applied after blending
    the logits: "sigmoid" for region outputs (GLIMS), "softmax" for classes, "none" for logits.
    ``device`` is where the windows run (default: the model's device). ``progress`` is called
    as ``progress(done_windows, total_windows)`` after each batch of windows. ``amp`` (default:
    on for CUDA) runs the windows under float16 autocast. The model is put in eval mode for
    the call and restored afterwards.
    """
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
    unbatched = x.ndim == 4
    x = (x.unsqueeze(0) if unbatched else x).detach().to("cpu", torch.float32)

    sw_device = torch.device(device) if device is not None else _model_device(model)
    use_amp = (sw_device.type == "cuda") if amp is None else bool(amp and sw_device.type == "cuda")
    total = count_windows(x.shape[2:], roi, overlap, batch=x.shape[0])
    done = 0

    def predictor(windows: torch.Tensor) -> torch.Tensor:
        nonlocal done
        with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
            out = model(windows)
        if isinstance(out, (list, tuple)):  # deep-supervision nets: the full-resolution head
            out = out[0]
        done += windows.shape[0]
        if progress is not None:
            progress(min(done, total), total)
        return out.float()  # blend in float32 even under AMP

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            logits = sliding_window_inference(
                x,
                roi_size=roi,
                sw_batch_size=int(sw_batch_size),
                predictor=predictor,
                overlap=float(overlap),
                mode=mode,
                sw_device=sw_device,
                device=torch.device("cpu"),
            )
            if activation == "sigmoid":
                logits = logits.sigmoid_()
            elif activation == "softmax":
                logits = logits.softmax(dim=1)
    except RuntimeError as err:
        raise TumorSegError(f"sliding-window inference failed: {first_line(err)}") from err
    finally:
        model.train(was_training)
    logits = torch.as_tensor(logits)  # MONAI may hand back a MetaTensor
    if hasattr(logits, "as_tensor"):
        logits = logits.as_tensor()
    return logits[0] if unbatched else logits
