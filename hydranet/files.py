"""Writing files safely: atomic writes, checked output paths, and the command's inputs protected.

Every command writes through these (checkpoints, images, JSON, logs): a crash or a full disk
leaves the previous file or none, an unwritable destination fails before the expensive work,
and no output replaces one of the command's own inputs.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import stat
import tempfile
from pathlib import Path
from typing import Optional, Union

from .errors import OutputError

PathLike = Union[str, Path]

__all__ = [
    "protected_inputs",
    "protect_inputs",
    "refuse_overwrite",
    "output_error",
    "writable_dir",
    "writable_file",
    "write_bytes_atomic",
]


# (device, inode) of the files the running command reads; no writer may replace one of them.
_PROTECTED: contextvars.ContextVar[frozenset] = contextvars.ContextVar("hydranet_inputs", default=frozenset())


def _file_key(path: PathLike) -> Optional[tuple]:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


@contextlib.contextmanager
def protected_inputs(paths):
    """Within the block, :func:`writable_file` and :func:`write_bytes_atomic` refuse to write
    over any of the existing regular files in ``paths`` (the command's inputs), whatever the
    path they are reached by (links, ``..``, another spelling)."""
    token = _PROTECTED.set(_PROTECTED.get() | {k for k in map(_file_key, paths) if k})
    try:
        yield
    finally:
        _PROTECTED.reset(token)


def protect_inputs(paths) -> None:
    """Add ``paths`` to the inputs protected by the enclosing :func:`protected_inputs` block
    (e.g. the images a folder argument expanded to)."""
    _PROTECTED.set(_PROTECTED.get() | {k for k in map(_file_key, paths) if k})


def refuse_overwrite(path: PathLike, *inputs: PathLike) -> None:
    """OutputError when ``path`` is the same file as one of ``inputs`` or a protected input."""
    key = _file_key(path)
    if key is None:
        return
    for src in inputs:
        if _file_key(src) == key:
            raise OutputError(f"{path}: refused: it is also the input {src}; write to another path")
    if key in _PROTECTED.get():
        raise OutputError(f"{path}: refused: it is one of this command's inputs; write to another path")


def output_error(path: PathLike, exc: OSError) -> OutputError:
    """An :class:`OutputError` naming ``path`` for an OS error met while writing it."""
    reason = exc.strerror or str(exc)
    if isinstance(exc, (NotADirectoryError, FileExistsError)):
        reason += " (a file stands where a folder is needed)"
    return OutputError(f"{path}: cannot write: {reason}")


def writable_dir(folder: PathLike, target: Optional[PathLike] = None) -> Path:
    """Create ``folder`` if needed and check that it accepts new files (a probe file is made
    and removed), so a command fails before its expensive work, not after.

    Raises:
        OutputError: naming the folder, or ``target`` (the file to be written there) and the
            folder (read-only, a file in the way, a path under /proc, ...).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".hydranet-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        error = output_error(folder, exc)
        if target is not None:
            error = OutputError(f"{target}: cannot write into its folder: {error}")
        raise error from exc
    return folder


def writable_file(path: PathLike) -> Path:
    """Check that ``path`` can be (re)written as a regular file (see :func:`writable_dir`).

    A folder or a device (``/dev/full``, ...) at ``path`` is refused: replacing it by rename
    would be wrong, and writing into a device is never what a command's output means.
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise OutputError(f"{path}: cannot write: it is {kind}")
    refuse_overwrite(path)
    writable_dir(path.parent, target=path)
    return path


def write_bytes_atomic(path: PathLike, data, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename
    (``fsync``: flush it to the disk first, for files a power cut must not lose).

    A crash or a full disk leaves the previous file (or none) and no temporary file.

    Raises:
        OutputError: naming ``path``.
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise OutputError(f"{path}: cannot write: it is {kind}")
    refuse_overwrite(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise output_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise output_error(path, exc) from exc
        raise
    return path
