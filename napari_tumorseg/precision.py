"""Numeric precision of training and prediction: fp32, bfloat16 on CPUs that have it, fp16 on CUDA.

A CPU with native bfloat16 arithmetic (Intel AMX or AVX-512-BF16, ARMv8.6 BF16) runs
convolutions about twice as fast under ``torch.autocast("cpu", torch.bfloat16)``; a CPU
without it (AVX2 only) emulates bf16 and is slower than fp32. The choice therefore follows
the hardware: ``auto`` is bf16 where the processor says it has native bf16, fp32 elsewhere;
CUDA keeps its fp16 autocast. ``fp32`` and ``bf16`` force a choice (bf16 on a CPU without it
runs, with a warning that it is emulated).

Detection reads the processor's feature flags (``/proc/cpuinfo`` on Linux, ``sysctl`` on
macOS); ``TUMORSEG_CPU_BF16=0|1`` overrides it (a machine whose flags lie, or a test).
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from dataclasses import dataclass

from napari_tumorseg.errors import TumorSegError

CHOICES = ("auto", "fp32", "bf16")
_LINUX_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=1)
def cpu_bf16_flags() -> tuple[str, ...]:
    """The processor's native-bf16 feature flags found (empty: none, or unknown)."""
    system = platform.system()
    try:
        if system == "Linux":
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if line.startswith(("flags", "Features")):
                        words = set(line.split(":", 1)[1].split())
                        found = tuple(f for f in _LINUX_FLAGS if f in words)
                        if "bf16" in words:  # ARM's Features line
                            found += ("bf16",)
                        return found
        elif system == "Darwin":
            out = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True,
                                 text=True, timeout=5).stdout.strip()
            return ("FEAT_BF16",) if out == "1" else ()
    except (OSError, subprocess.SubprocessError):
        pass
    return ()


def cpu_has_native_bf16() -> bool:
    forced = os.environ.get("TUMORSEG_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    return bool(cpu_bf16_flags())


def cpu_description() -> str:
    """What the docks and benchmarks print: the processor and its bf16 flags."""
    name = platform.processor() or platform.machine()
    try:
        if platform.system() == "Linux":
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if line.startswith("model name"):
                        name = line.split(":", 1)[1].strip()
                        break
    except OSError:
        pass
    flags = ", ".join(cpu_bf16_flags()) or "no native bf16"
    return f"{name} ({os.cpu_count()} cores; {flags})"


@dataclass(frozen=True)
class Precision:
    """What one run uses: ``dtype`` for autocast (None: fp32) and the words the user sees."""

    device_type: str
    dtype: object  # torch.dtype or None
    name: str  # "fp32", "bf16", "fp16"
    reason: str

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    def autocast(self):
        """A ``torch.autocast`` context (a no-op one for fp32)."""
        import torch

        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None)

    def run(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` (a model's forward) under :meth:`autocast`, its outputs in
        float32: losses, metrics, activations and thresholds never see bf16 / fp16."""
        with self.autocast():
            out = fn(*args, **kwargs)
        return to_float(out)

    def describe(self) -> str:
        """One line for docks and logs: ``bf16 (the CPU has native bf16 (amx_bf16))``."""
        return f"{self.name} ({self.reason})"


def to_float(out):
    """A model's output (a tensor, or a list / tuple / dict of them) in float32."""
    import torch

    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() and out.dtype != torch.float32 else out
    if isinstance(out, (list, tuple)):
        return type(out)(to_float(o) for o in out)
    if isinstance(out, dict):
        return {k: to_float(v) for k, v in out.items()}
    return out


def resolve(choice, device, amp: bool | None = None) -> Precision:
    """The precision for ``choice`` ("auto", "fp32", "bf16"; None = auto) on ``device``.

    The one rule training, prediction and the click engines follow. A :class:`Precision`
    passes through unchanged. ``amp=False`` (the older switch: no mixed precision) makes
    "auto" fp32; an explicit choice wins over it.
    """
    import torch

    if isinstance(choice, Precision):
        return choice
    choice = (choice or "auto").lower()
    if choice not in CHOICES:
        raise TumorSegError(f"precision must be one of {', '.join(CHOICES)}, got {choice!r}")
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if choice == "auto" and amp is not None and not amp:
        return Precision(dev.type, None, "fp32", "mixed precision switched off")
    if dev.type == "cuda":
        if choice == "fp32":
            return Precision("cuda", None, "fp32", "asked for")
        if choice == "bf16":
            return Precision("cuda", torch.bfloat16, "bf16", "asked for")
        return Precision("cuda", torch.float16, "fp16", "CUDA autocast")
    if dev.type != "cpu":
        return Precision(dev.type, None, "fp32", f"no autocast on {dev.type}")
    native = cpu_has_native_bf16()
    if choice == "fp32":
        return Precision("cpu", None, "fp32", "asked for")
    if choice == "bf16":
        return Precision("cpu", torch.bfloat16, "bf16",
                         "asked for" if native else "asked for; this CPU emulates bf16 (slower than fp32)")
    if native:
        return Precision("cpu", torch.bfloat16, "bf16", "the CPU has native bf16 (" +
                         ", ".join(cpu_bf16_flags()) + ")" if cpu_bf16_flags() else "forced by TUMORSEG_CPU_BF16")
    return Precision("cpu", None, "fp32", "the CPU has no native bf16")


def prefer_channels_last(model, device, dims: int) -> bool:
    """Put a 2D model that runs on a CPU in channels-last (NHWC) layout; True when done.

    oneDNN's CPU convolutions run faster on NHWC: measured on this project's U-Net (width
    16, 2 cores) a training step 1.3x in fp32 and 1.9x → 2.45x of fp32-NCHW under bf16,
    a batch-2 click forward 2.0x → 2.2x. The model's layout is enough: a convolution whose
    weight is channels-last gives a channels-last output for either input layout. 3D and
    CUDA models keep theirs (not measured here).
    """
    import torch

    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if dims != 2 or dev.type != "cpu":
        return False
    model.to(memory_format=torch.channels_last)
    return True
