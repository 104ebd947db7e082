"""The project's checkpoint format: a flat dict of plain data and tensors.

Keys: ``format`` ("hydranet"), ``version``, ``config`` (the model's plain-data config),
``model`` (state dict), ``sha256`` (see :func:`content_hash`) and, for training checkpoints,
``optimizer``, ``scheduler``, ``scaler``, ``weighting``, ``step``, ``epoch``, ``rng``, ``best``,
``meta``.

Files are written atomically (serialised in memory, written to a temporary file in the same
folder, fsync, rename) and read with ``torch.load(weights_only=True)``, which never executes
pickled code. Before that, every record of the zip container is checked against its CRC-32
(``torch.load`` does not) and must be stored uncompressed (as ``torch.save`` writes it), and a
legacy (non-zip) file's declared storage sizes are summed against its size, so loading
allocates at most the file's size. After loading, every tensor must be a dense,
non-overlapping view of exactly its own bytes (:func:`check_tensor_layout`: no stride-0 or
overlapping views, no offsets into a larger storage) and the plain data (config, meta) must be
of bounded size when written out, before anything is hashed or expanded. A Hydranet
checkpoint's ``sha256`` is then checked against its config and weights; files without one
(older files, the authors' files) get plausibility checks instead
(:func:`check_plausible_weights`). The config is validated and compared with the tensors'
shapes and dtypes on the meta device before any real allocation.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping, Union

import torch

from . import models
from .config import load_config
from .errors import CheckpointError, ConfigError
from .files import write_bytes_atomic
from .limits import max_plain_data_nodes

FORMAT = "hydranet"
VERSION = 1
PathLike = Union[str, Path]


def atomic_save(obj: Any, path: PathLike) -> None:
    """``torch.save`` to memory, then to a temporary file beside ``path``, fsync, rename over it.

    A crash mid-write leaves the previous file intact; a failed write leaves no temporary file.

    Raises:
        OutputError: naming ``path`` (read-only folder, full disk, a folder or device at ``path``).
    """

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes_atomic(path, buffer.getbuffer(), fsync=True)


def verify_zip(path: PathLike) -> None:
    """Check every record of a zip-format torch file against its CRC-32 (legacy files pass).

    Raises:
        CheckpointError: naming the file and the damaged record.
    """
    if not zipfile.is_zipfile(path):
        return  # the legacy (pre-1.6) format has no checksums; torch.load judges it
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: damaged checkpoint file ({exc})") from exc
    if bad is not None:
        raise CheckpointError(f"{path}: damaged checkpoint file: record {bad!r} fails its CRC-32 check")
    with zipfile.ZipFile(path) as archive:
        packed = [i.filename for i in archive.infolist() if i.compress_type != zipfile.ZIP_STORED]
    if packed:  # torch.save never compresses; a compressed record could unpack to any size
        raise CheckpointError(
            f"{path}: refused: record {packed[0]!r} is compressed (torch.save stores records as they are)"
        )


# Bytes per element of the storage classes a legacy (pre-1.6, non-zip) torch file names.
_LEGACY_ITEMSIZE = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
    "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
    "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16,
}  # fmt: skip


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of a legacy torch file


class _Stub:
    """Stands for any object a pickle builds while :func:`_legacy_storage_bytes` reads it."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Stub()

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, value):
        pass

    def extend(self, values):
        pass


class _SizingUnpickler(pickle.Unpickler):
    """Reads a legacy torch pickle without building anything: every global is a :class:`_Stub`
    (no code runs) and every storage reference is recorded with its declared size."""

    def __init__(self, file):
        super().__init__(file)
        self.storages: dict = {}

    def find_class(self, module, name):
        return type(name, (_Stub,), {"name": name})  # a class, so NEWOBJ and REDUCE both work

    def persistent_load(self, pid):
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            itemsize = _LEGACY_ITEMSIZE.get(getattr(pid[1], "name", ""), 16)  # unknown: the widest
            numel = pid[4] if isinstance(pid[4], int) else 0
            self.storages[pid[2]] = max(self.storages.get(pid[2], 0), numel * itemsize)
        return _Stub()


def _legacy_storage_bytes(path: Path) -> None:
    """Refuse a legacy (non-zip) torch file whose storages declare more bytes than the file
    holds: ``torch.load`` allocates each declared storage before reading it."""
    with open(path, "rb") as f:
        try:
            magic = _SizingUnpickler(f).load()
        except Exception:
            return  # not a legacy torch file: torch.load reports it
        if magic != _LEGACY_MAGIC:
            return
        try:
            for _ in range(2):  # protocol version, system info
                _SizingUnpickler(f).load()
            reader = _SizingUnpickler(f)
            reader.load()
        except Exception as exc:
            raise CheckpointError(
                f"{path}: refused: a legacy torch file whose tensors cannot be sized before loading "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        size = path.stat().st_size
    declared = sum(reader.storages.values())
    if declared > size:
        raise CheckpointError(
            f"{path}: refused: its tensors declare {declared} bytes of storage but the file holds {size} bytes"
        )


def safe_load(path: PathLike) -> Any:
    """Load a file saved with ``torch.save`` without executing pickled code.

    Raises:
        CheckpointError: the file is missing, damaged (a record fails its CRC), truncated, not
            a torch file, or carries objects other than tensors and plain data (e.g. code to
            run on unpickling).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist (or is not a regular file)")
    verify_zip(path)
    if not zipfile.is_zipfile(path):
        _legacy_storage_bytes(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "GLOBAL" in text or "global" in text.split("WeightsUnpickler error:")[-1]:
            culprit = text.split("WeightsUnpickler error:")[-1].strip().split(".")[0]
            raise CheckpointError(
                f"{path}: refused: the file holds objects other than tensors and plain data "
                f"(it could run code when loaded), so it is not loaded ({culprit})"
            ) from exc
        raise CheckpointError(f"{path}: not a readable torch checkpoint (corrupt or another format)") from exc
    except Exception as exc:  # zip/EOF/OS errors from truncated, foreign or unreadable files
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint: truncated, damaged or another format "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    check_loaded(path, obj)
    return obj


def _dense_view(t: torch.Tensor) -> bool:
    """True when ``t``'s sizes and strides address every element of its span exactly once."""
    expected = 1
    for stride, size in sorted((st, sz) for st, sz in zip(t.stride(), t.shape) if sz != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def check_tensor_layout(path: PathLike, name: str, t: torch.Tensor) -> None:
    """Refuse a tensor that is not a dense, non-overlapping view of exactly its own bytes.

    A stride-0 or overlapping view has the shape it claims but far fewer bytes in the file,
    and anything that copies it (hashing, ``load_state_dict``, ``.contiguous()``) would expand
    it; a view at an offset into a larger storage hides bytes. Checked before either happens.
    """
    nbytes = t.untyped_storage().nbytes()
    wanted = t.numel() * t.element_size()
    if t.storage_offset() != 0 or nbytes != wanted or not _dense_view(t):
        raise CheckpointError(
            f"{path}: refused: tensor {name} of shape {tuple(t.shape)} is not a dense view of its own "
            f"bytes (strides {t.stride()}, offset {t.storage_offset()}, {nbytes} bytes stored for "
            f"{wanted}); crafted or damaged file"
        )


def check_loaded(path: PathLike, obj: Any) -> None:
    """Walk what ``torch.load`` returned: every tensor passes :func:`check_tensor_layout`, and
    the plain data, counted as if written out (a pickle may share one list many times over),
    stays within :func:`hydranet.limits.max_plain_data_nodes`. Each distinct object is visited
    once (sizes are memoised), without recursion and without expanding anything.

    Raises:
        CheckpointError: naming the file and the tensor, or the size of the plain data.
    """

    budget = max_plain_data_nodes()
    sizes: dict[int, int] = {}  # id -> values it holds when written out
    in_progress: set[int] = set()
    stack = [(obj, "", False)]
    while stack:
        item, where, children_done = stack.pop()
        key = id(item)
        if isinstance(item, torch.Tensor):
            if key not in sizes:
                check_tensor_layout(path, where or "(top level)", item)
                sizes[key] = 1
            continue
        if isinstance(item, Mapping):
            children = [(v, f"{where}.{k}" if where else str(k)) for k, v in item.items()]
        elif isinstance(item, (list, tuple)):
            children = [(v, f"{where}[{i}]") for i, v in enumerate(item)]
        else:
            sizes[key] = 1
            continue
        if children_done:
            in_progress.discard(key)
            sizes[key] = 1 + len(item) * isinstance(item, Mapping) + sum(sizes[id(c)] for c, _ in children)
            if sizes[key] > budget:
                raise CheckpointError(
                    f"{path}: refused: its plain data (config, meta, ...) holds more than {budget} values "
                    "when written out (HYDRANET_MAX_PLAIN_DATA_NODES)"
                )
            continue
        if key in sizes:
            continue
        if key in in_progress:
            raise CheckpointError(f"{path}: refused: its plain data contains itself ({where or 'the top level'})")
        in_progress.add(key)
        stack.append((item, where, True))
        stack.extend((c, w, False) for c, w in children if id(c) not in sizes)


def content_hash(config: Mapping[str, Any], weights: Mapping[str, torch.Tensor]) -> str:
    """sha256 of a checkpoint's config (as sorted JSON) and weights (name, dtype, shape, bytes)."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode("utf-8"))
    for name in sorted(weights):
        t = weights[name]
        digest.update(f"\0{name}|{t.dtype}|{tuple(t.shape)}\0".encode())
        digest.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# Plausibility bounds for weights that carry no content hash (older files, the authors' files,
# ONNX files from elsewhere). The bundled synthetic model holds |weight| <= 1.4, BatchNorm
# running means <= 5.6 and running variances in [3.8e-4, 33]; ImageNet-trained MobileNetV2s
# hold running variances of a few hundred at most. A flipped high exponent bit multiplies a
# value by 2**16 to 2**128 (float32), which these bounds catch for all but tiny values.
MAX_ABS_WEIGHT = 1e4  # parameters: convolution/linear weights and biases, BatchNorm affine
MAX_ABS_BN_STAT = 1e6  # BatchNorm running_mean and running_var


def check_plausible_weights(path: PathLike, weights: Mapping[str, torch.Tensor], magnitudes: bool = True) -> None:
    """Refuse weights no trained network holds: a non-finite value, a parameter beyond
    ``MAX_ABS_WEIGHT``, a BatchNorm statistic beyond ``MAX_ABS_BN_STAT``, a negative running
    variance or batch count. For files without a content hash, where a flipped bit would
    otherwise load and give absurd outputs. With ``magnitudes=False`` (hashed files, whose
    hash an editor can recompute) only finiteness is checked: Hydranet never saves a
    non-finite weight.

    Raises:
        CheckpointError: naming the file, the tensor and the offending value.
    """
    for name, t in weights.items():
        leaf = name.rsplit(".", 1)[-1]
        if not t.is_floating_point():
            if leaf == "num_batches_tracked" and t.numel() and int(t.min()) < 0:
                raise CheckpointError(f"{path}: implausible weights: {name} is negative ({int(t.min())})")
            continue
        if t.numel() == 0:
            continue
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            bad = t[~finite].reshape(-1)[0].item()
            raise CheckpointError(f"{path}: implausible weights: {name} holds {bad} (damaged file?)")
        if not magnitudes:
            continue
        bound = MAX_ABS_BN_STAT if leaf in ("running_mean", "running_var") else MAX_ABS_WEIGHT
        peak = float(t.abs().max())
        if peak > bound:
            raise CheckpointError(
                f"{path}: implausible weights: {name} holds a value of magnitude {peak:.3g}, beyond "
                f"{bound:g} (a trained network holds far less; damaged file?)"
            )
        if leaf == "running_var" and float(t.min()) < 0:
            raise CheckpointError(f"{path}: implausible weights: {name} holds a negative variance {float(t.min()):.3g}")


def model_checkpoint(model, **extra) -> dict:
    """The checkpoint dict of ``model`` (a HydraNet built from a config)."""
    config = dict(model.config)
    config["model"] = {**config["model"], "encoder_weights": None}  # weights are in the file
    weights = model.state_dict()
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": config,
        "model": weights,
        "sha256": content_hash(config, weights),
        **extra,
    }


def save_model(model, path: PathLike, **extra) -> None:
    """Write ``model`` (config + weights + extras) atomically in the project's format."""
    atomic_save(model_checkpoint(model, **extra), path)


def read_checkpoint(path: PathLike) -> dict:
    """Load and validate a checkpoint of the project's own format (CRC, structure, content hash)."""
    ckpt = safe_load(path)
    if not isinstance(ckpt, Mapping) or ckpt.get("format") != FORMAT:
        hint = ""
        if isinstance(ckpt, Mapping) and "state_dict" in ckpt:
            hint = " It looks like an original Multi-Task RefineNet checkpoint: run `hydranet convert SRC DST` first."
        raise CheckpointError(f"{path}: not a Hydranet checkpoint (no format={FORMAT!r} key).{hint}")
    version = ckpt.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise CheckpointError(f"{path}: checkpoint version must be a non-negative integer, got {version!r}")
    if version > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {version} is newer than this Hydranet ({VERSION})")
    for key in ("config", "model"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint has no {key!r} entry")
    if not isinstance(ckpt["config"], Mapping):
        kind = type(ckpt["config"]).__name__
        raise CheckpointError(f"{path}: the checkpoint's 'config' must be a mapping, got {kind}")
    if ckpt.get("meta") is not None and not isinstance(ckpt["meta"], Mapping):
        kind = type(ckpt["meta"]).__name__
        raise CheckpointError(f"{path}: the checkpoint's 'meta' must be a mapping, got {kind}")
    weights = ckpt["model"]
    if not isinstance(weights, Mapping) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"{path}: the checkpoint's 'model' must map names to tensors")
    if "sha256" in ckpt:
        if ckpt["sha256"] != content_hash(ckpt["config"], weights):
            raise CheckpointError(
                f"{path}: content hash mismatch: the config or weights differ from what was "
                "written (damaged or edited file)"
            )
        check_plausible_weights(path, weights, magnitudes=False)
    else:  # files written before the hash existed carry none: their CRCs and values are checked
        check_plausible_weights(path, weights)
    return ckpt


def checked_config(path: PathLike, ckpt: Mapping[str, Any]) -> dict:
    """The validated config of a checkpoint read by :func:`read_checkpoint`.

    ``model.encoder_weights`` is cleared: the file holds every weight, nothing is downloaded.
    """

    try:
        cfg = load_config(ckpt["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: invalid config inside the checkpoint: {exc}") from exc
    cfg["model"]["encoder_weights"] = None
    return cfg


def check_weight_shapes(path: PathLike, cfg: Mapping[str, Any], weights: Mapping[str, torch.Tensor]) -> None:
    """Compare the tensors of a file with the model ``cfg`` describes, built on the meta device
    (no memory is allocated, however large the config says the model is).

    Raises:
        CheckpointError: naming the file and the first missing, unexpected or mis-shaped tensors.
    """

    try:
        with torch.device("meta"):
            meta = models.build_model(cfg, progress=False).state_dict()
    except ConfigError as exc:
        raise CheckpointError(f"{path}: invalid config inside the checkpoint: {exc}") from exc
    expected = {k: tuple(v.shape) for k, v in meta.items()}
    problems = [f"missing {k}" for k in expected if k not in weights]
    problems += [f"unexpected {k}" for k in weights if k not in expected]
    problems += [
        f"{k}: file {tuple(weights[k].shape)}, config {expected[k]}"
        for k in expected
        if k in weights and tuple(weights[k].shape) != expected[k]
    ]
    # Same kind of number (a float weight may be stored as fp16/bf16/fp64), never a wider type
    # than fp64, so the model built next holds at most twice the bytes the file stores.
    problems += [
        f"{k}: file dtype {weights[k].dtype}, model {meta[k].dtype}"
        for k in expected
        if k in weights
        and (
            weights[k].is_floating_point() != meta[k].is_floating_point()
            or weights[k].is_complex()
            or weights[k].dtype == torch.bool
            or weights[k].element_size() < 2
            and meta[k].is_floating_point()
        )
    ]
    if problems:
        more = f" (+{len(problems) - 4} more)" if len(problems) > 4 else ""
        raise CheckpointError(
            f"{path}: weights do not match the config inside the file: {'; '.join(problems[:4])}{more}"
        )


def read_model_checkpoint(path: PathLike) -> tuple[dict, dict]:
    """:func:`read_checkpoint`, then the file's config validated and its tensors checked against
    the model that config describes (names, shapes, kinds of number). Returns ``(ckpt, cfg)``.

    Every reader that loads the weights into a model (inference, resume, ``train.init``,
    ``convert``) goes through here, so none accepts, say, int64 weights that loading would cast.
    """
    ckpt = read_checkpoint(path)
    cfg = checked_config(path, ckpt)
    check_weight_shapes(path, cfg, ckpt["model"])
    return ckpt, cfg


def load_model(path: PathLike, device: Union[str, torch.device] = "cpu"):
    """Rebuild the model from a checkpoint file alone (config inside) and return it in eval mode.

    The config is validated and checked against the tensors' shapes before the model is
    allocated, so a crafted config cannot make it allocate more than the file holds.

    ``hydranet.load_model`` (:func:`hydranet.weights.hub.load_model`) also takes the name of
    one of the authors' models (``"mtrn-nyud-joint"``) and calls this with its converted file.
    """

    path = Path(path).expanduser()
    ckpt, cfg = read_model_checkpoint(path)
    model = models.build_model(cfg, progress=False)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the config inside the file: {exc}") from exc
    return model.to(device).eval()


def slim_checkpoint(src: PathLike, dst: PathLike, half: bool = True) -> dict:
    """Write the inference part of a Hydranet checkpoint: config, weights, meta.

    Drops the training state (optimiser, scheduler, RNG, ...) and, with ``half``, stores
    floating-point weights as fp16 (``load_model`` casts them back to the model's fp32).
    Returns the written checkpoint.
    """
    ckpt, _ = read_model_checkpoint(src)  # never copy a file that cannot load
    weights = {k: (v.half() if half and v.is_floating_point() else v) for k, v in ckpt["model"].items()}
    slim = {
        "format": FORMAT,
        "version": VERSION,
        "config": ckpt["config"],
        "model": weights,
        "sha256": content_hash(ckpt["config"], weights),
        "meta": {
            **dict(ckpt.get("meta") or {}),
            "source": Path(src).name,
            "trained_steps": ckpt.get("step"),
            "dtype": "float16" if half else "float32",
        },
    }
    atomic_save(slim, dst)
    return slim
