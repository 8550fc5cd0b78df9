"""One way to say how far a long job is, for the CLI's stderr and the docks' status lines."""

from __future__ import annotations

import math


def format_eta(seconds: float | None) -> str:
    """``"1h05m"``, ``"3m07s"``; ``"?"`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def progress_text(what: str, done: int, total: int, unit: str = "", eta_s: float | None = None) -> str:
    """``"predicting: 12/40 slices (30%), ETA 1m05s"``; the ETA only when one is given."""
    unit = f" {unit}" if unit else ""
    pct = f" ({int(100 * done / total)}%)" if total else ""
    eta = f", ETA {format_eta(eta_s)}" if eta_s is not None else ""
    return f"{what}: {done}/{total}{unit}{pct}{eta}"
