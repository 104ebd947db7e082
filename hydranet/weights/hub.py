"""The authors' Multi-Task RefineNet models by name: download, verify, convert, cache.

    from hydranet.weights.hub import fetch_model
    path = fetch_model("mtrn-kitti-joint")   # a Hydranet checkpoint in torch's hub cache

On first use the authors' file is downloaded from their repository (``$HYDRANET_MODEL_BASE_URL``
overrides the address), its git blob id is checked against :data:`KNOWN_MODELS` (the id
git prints for the file: sha1 of ``b"blob <size>\\0"`` + its bytes), it is converted with
:func:`hydranet.weights.convert` and the converted checkpoint is kept in
``torch.hub.get_dir()/checkpoints/hydranet/<name>.pt``. Later uses read the cached file.
Offline, an original file placed by hand in that folder under its own name is verified
and converted the same way; otherwise a :class:`~hydranet.errors.WeightsUnavailableError`
says which file to fetch and where to put it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Union

from .. import checkpoint
from ..errors import CheckpointError, WeightsUnavailableError
from .authors import AUTHORS_MODELS
from .mtrn import convert

__all__ = [
    "KNOWN_MODELS",
    "DEFAULT_BASE_URL",
    "base_url",
    "cache_dir",
    "git_blob_id",
    "is_known_model",
    "fetch_model",
    "file_or_known_model",
    "load_model",
]

#: Where the authors keep their files (branch master of DrSleep/multi-task-refinenet).
DEFAULT_BASE_URL = "https://github.com/DrSleep/multi-task-refinenet/raw/master/weights/"

#: Model name -> the authors' file, its git blob id and layout (the table of :mod:`.authors`).
KNOWN_MODELS = AUTHORS_MODELS

_CHUNK = 1 << 20


def is_known_model(name) -> bool:
    """True for the names of :data:`KNOWN_MODELS` (``mtrn-nyud-joint`` ...)."""
    return isinstance(name, str) and name in KNOWN_MODELS


def file_or_known_model(path) -> Path:
    """``path`` itself when it is a file, else the cached checkpoint of the known model it names
    (fetched on first use), else ``path`` unchanged (the caller reports it missing)."""
    if not Path(path).expanduser().is_file() and is_known_model(str(path)):
        return fetch_model(str(path))
    return Path(path).expanduser()


def load_model(path, device="cpu"):
    """:func:`hydranet.checkpoint.load_model`, for a checkpoint file or the name of one of the
    authors' models (``"mtrn-nyud-joint"``: downloaded, verified and converted on first use).

    This is ``hydranet.load_model``.
    """
    return checkpoint.load_model(file_or_known_model(path), device=device)


def base_url() -> str:
    """``$HYDRANET_MODEL_BASE_URL`` if set, else :data:`DEFAULT_BASE_URL` (always ending in ``/``)."""
    url = os.environ.get("HYDRANET_MODEL_BASE_URL") or DEFAULT_BASE_URL
    return url if url.endswith("/") else url + "/"


def cache_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints/hydranet`` (follows ``$TORCH_HOME``)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / "hydranet"


def git_blob_id(path: Union[str, Path]) -> str:
    """The id git gives the file's content: sha1 of ``b"blob <size>\\0"`` followed by the bytes."""
    path = Path(path)
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _manual_steps(name: str, url: str, raw: Path) -> str:
    return (
        f"fetch {url} by hand and put it at {raw} (it is verified and converted on the next use of "
        f"{name!r}); or convert it yourself with `hydranet convert {raw.name} {name}.pt` and pass "
        f"--weights {name}.pt"
    )


def _download(url: str, dst: Path, progress: bool) -> None:
    """``url`` -> ``dst`` through a temporary file beside it (renamed when complete)."""
    from tqdm import tqdm

    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".part", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dst.name,
                disable=not progress,
                leave=False,
            ) as bar:
                for chunk in iter(lambda: resp.read(_CHUNK), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch_model(name: str, progress: bool = True, force: bool = False) -> Path:
    """The converted checkpoint of a known model, downloading and converting it on first use.

    Args:
        name: a key of :data:`KNOWN_MODELS`.
        progress: show a progress bar while downloading.
        force: convert again even when a converted file is cached.

    Raises:
        CheckpointError: unknown name, or the file's git blob id is not the expected one
            (nothing is cached then).
        WeightsUnavailableError: the file cannot be downloaded (offline); says what to fetch
            and where to put it.
    """
    if not is_known_model(name):
        raise CheckpointError(f"unknown model name {name!r}; known: {', '.join(KNOWN_MODELS)}")
    entry = KNOWN_MODELS[name]
    folder = cache_dir()
    converted = folder / f"{name}.pt"
    if converted.is_file() and not force:
        return converted
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsUnavailableError(f"cannot create the model cache folder {folder}: {exc}") from exc
    raw = folder / entry["file"]
    url = base_url() + entry["file"]
    if not raw.is_file():
        if progress:
            print(f"downloading {name}: {url}", flush=True)
        try:
            _download(url, raw, progress)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise WeightsUnavailableError(
                f"model {name!r}: cannot download {url} ({reason}). " + _manual_steps(name, url, raw)
            ) from exc
    found = git_blob_id(raw)
    if found != entry["git_blob"]:
        raw.unlink(missing_ok=True)
        raise CheckpointError(
            f"model {name!r}: {entry['file']} from {url} has git blob id {found}, expected "
            f"{entry['git_blob']}; the file was deleted and nothing was cached (a changed or "
            f"truncated download). Try again, or " + _manual_steps(name, url, raw)
        )
    convert(raw, converted)  # written atomically (temporary file + rename)
    raw.unlink(missing_ok=True)
    return converted
