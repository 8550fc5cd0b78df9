"""Atomic, non-clobbering file writes shared by every writer and exporter."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from napari_tumorseg.errors import WriteError


def check_writable(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse to replace an existing file unless ``overwrite``; create parent folders."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise WriteError(f"{path} exists; pass overwrite to replace it")
    if path.exists() and path.is_dir():
        raise WriteError(f"{path} is a folder, not a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WriteError(f"cannot create folder {path.parent}: {err.strerror}") from err
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A crash or exception leaves no half-written file behind. Keeps the full suffix
    (``.nii.gz``) so libraries that dispatch on extension still work.
    """
    path = check_writable(path, overwrite)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    # mkstemp creates 0600; give the result the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        if path.exists() and not overwrite:  # appeared while we were writing
            raise WriteError(f"{path} exists; pass overwrite to replace it")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
