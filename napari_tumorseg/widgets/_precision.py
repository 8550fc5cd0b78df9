"""The Precision choice of the Train and Predict docks: auto / fp32 / bf16, saying what auto is.

The "auto" entry names what it resolves to on the dock's device ("auto (bf16)"), and the
tooltip says why and which processor this is (:func:`napari_tumorseg.precision.cpu_description`),
so the user sees the precision a run will use before starting it.
"""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.precision import CHOICES, cpu_description, resolve


def _device(name: str):
    from napari_tumorseg.training.engine import pick_device

    try:
        return pick_device(name or "auto")
    except TumorSegError:  # a device that is not there: the run will say so
        return None


class PrecisionCombo(QComboBox):
    """auto / fp32 / bf16; ``choice()`` is what TrainConfig and Predictor take."""

    def __init__(self, parent=None):
        super().__init__(parent)
        for name in CHOICES:
            self.addItem(name, name)
        self.resolved = None
        self.refresh("auto")

    def choice(self) -> str:
        return self.currentData() or "auto"

    def refresh(self, device_name: str = "auto") -> None:
        """Name what auto resolves to on ``device_name`` (auto, cpu, cuda, mps)."""
        device = _device(device_name)
        if device is None:
            self.setItemText(0, "auto")
            self.setToolTip(f"device {device_name} is not available\n{cpu_description()}")
            return
        self.resolved = resolve(self.choice(), device)
        auto = resolve("auto", device)
        self.setItemText(0, f"auto ({auto.name})")
        self.setToolTip(
            f"numeric precision on {device.type}: {self.resolved.describe()}\n"
            f"auto: bf16 autocast on a CPU with native bf16 (AMX or AVX-512-BF16), about 2x faster "
            f"there; fp32 on other CPUs; fp16 autocast on CUDA\n"
            f"this CPU: {cpu_description()}")
