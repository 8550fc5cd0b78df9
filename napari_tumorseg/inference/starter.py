"""The automatic BraTS model that ships with the plugin: what "starter" names.

``tumorseg predict starter CASE -o OUT`` and the Predict dock's default model use it, so a
fresh install segments whole tumour, tumour core and enhancing tumour without a checkpoint
of the user's. It is a research starter, small and trained on a CPU on the shared BraTS
cases (resources/README.md says how, on what, and under which licence); it is not a
medical device and every result it gives is for the user to check and correct.
"""

from __future__ import annotations

from pathlib import Path

from napari_tumorseg.errors import TumorSegError

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
STARTER_FILE = "starter_brats_regions.pt"
#: The word that stands for the shipped model wherever a checkpoint path is asked for.
NAME = "starter"
LABEL = "research starter (BraTS regions; not a medical device)"


def starter_path(resources: Path = RESOURCES) -> Path | None:
    """The shipped automatic model, or None in an install without it."""
    path = Path(resources) / STARTER_FILE
    return path if path.is_file() else None


def checkpoint_argument(value: str | Path) -> Path:
    """``value`` as a checkpoint path; the word ``starter`` is the shipped model.

    A file named ``starter`` in the working directory still wins: a user's file is never
    shadowed by our name for ours.
    """
    if str(value) == NAME and not Path(value).exists():
        path = starter_path()
        if path is None:
            raise TumorSegError("this install has no starter model (resources/" + STARTER_FILE +
                                " is missing); give a checkpoint from `tumorseg train`")
        return path
    return Path(value)
