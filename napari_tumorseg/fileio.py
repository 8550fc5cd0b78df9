"""Atomic, non-clobbering file writes shared by every writer and exporter."""

from __future__ import annotations

import contextlib
import os
import shutil
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


def make_stage(target: str | os.PathLike) -> Path:
    """A new hidden folder beside ``target`` (same file system, so the final moves are renames)."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    except OSError as err:
        raise WriteError(f"cannot write beside {target}: {err.strerror}") from err


def commit_stage(stage: Path, dest_root: Path, overwrite: bool = False) -> list[Path]:
    """Move every file under ``stage`` to the same relative place under ``dest_root``.

    Every destination is checked before the first move, so a refused overwrite changes
    nothing; the moves are renames, which a full disk cannot interrupt.
    """
    files = sorted(p for p in stage.rglob("*") if p.is_file())
    moves = [(p, dest_root / p.relative_to(stage)) for p in files]
    for _, dest in moves:
        if dest.exists() and (not overwrite or dest.is_dir()):
            raise WriteError(f"{dest} exists; pass overwrite to replace it")
    done = []
    for src, dest in moves:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
        done.append(dest)
    return done


@contextlib.contextmanager
def staged_outputs(target: str | os.PathLike, overwrite: bool = False):
    """All-or-nothing for outputs of several files (masks of a COCO export, labels plus
    probabilities, one TIFF per slice).

    Yields a staging folder beside ``target``; write there under the same relative names
    the outputs get beside ``target`` (``stage / Path(target).name`` is ``target``). They
    are moved into place only when the block ends without an exception; otherwise the
    staging folder is deleted and nothing was written. An OSError (a full disk) becomes
    one WriteError line.
    """
    target = Path(target)
    stage = make_stage(target)
    try:
        try:
            yield stage
        except OSError as err:
            raise WriteError(f"cannot write {target.name}: {err.strerror or err}") from None
        commit_stage(stage, target.parent, overwrite)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
