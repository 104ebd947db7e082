"""A content hash for ONNX files, and plausibility checks for files without one.

``hydranet export`` (and int8 quantisation) store a sha256 of the graph's tensors (its
initialisers and the values of its Constant nodes: name, element type, shape, bytes) in the
file's metadata under ``hydranet_sha256``. :func:`verify_onnx` recomputes it whenever a file
is loaded (``eval --weights x.onnx``, :class:`~hydranet.inference.onnx_model.OnnxModel`), so a
damaged file is refused instead of giving absurd outputs. A file without the entry (exported
by an older Hydranet, or elsewhere) gets the checks that catch flipped exponent bits: every
floating-point value finite and of magnitude at most ``MAX_ABS_ONNX_VALUE``.

The hash is over the tensors rather than the serialised graph because protobuf does not
promise byte-identical re-serialisation across library versions; a tensor's bytes are stable.
"""

from __future__ import annotations

import hashlib
from typing import Iterator

import numpy as np

from ..errors import CheckpointError

__all__ = ["HASH_METADATA_KEY", "MAX_ABS_ONNX_VALUE", "onnx_content_hash", "stamp_hash", "verify_onnx"]

HASH_METADATA_KEY = "hydranet_sha256"
# Folding BatchNorm into convolutions divides by sqrt(running_var), so exported weights and
# biases can exceed a checkpoint's (see hydranet.checkpoint.MAX_ABS_WEIGHT) by a few hundred times.
MAX_ABS_ONNX_VALUE = 1e6


def _tensors(model) -> Iterator[tuple[str, object]]:
    """``(name, TensorProto)`` of the main graph's initialisers and Constant node values."""
    for t in model.graph.initializer:
        yield t.name, t
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.HasField("t"):
                    yield f"{node.output[0]}(constant)", attr.t


def _array(name: str, tensor, path) -> np.ndarray:
    from onnx import numpy_helper

    try:
        return numpy_helper.to_array(tensor)
    except Exception as exc:  # external data, a size that does not match the shape, ...
        raise CheckpointError(f"{path}: tensor {name!r} cannot be read ({type(exc).__name__}: {exc})") from exc


def onnx_content_hash(model, path="ONNX model") -> str:
    """sha256 of the graph's tensors (see the module docstring), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(_tensors(model), key=lambda item: item[0]):
        digest.update(f"\0{name}|{tensor.data_type}|{tuple(tensor.dims)}\0".encode())
        digest.update(np.ascontiguousarray(_array(name, tensor, path)).tobytes())
    return digest.hexdigest()


def stamp_hash(model) -> None:
    """Set (or replace) the ``hydranet_sha256`` metadata entry of the in-memory ``model``."""
    value = onnx_content_hash(model)
    for entry in model.metadata_props:
        if entry.key == HASH_METADATA_KEY:
            entry.value = value
            return
    entry = model.metadata_props.add()
    entry.key, entry.value = HASH_METADATA_KEY, value


def verify_onnx(model, path) -> None:
    """Check the hash stored in ``model`` (an ``onnx.ModelProto`` read from ``path``), or, when
    it has none, that every floating-point tensor is finite and within ``MAX_ABS_ONNX_VALUE``.

    Raises:
        CheckpointError: naming the file (and the tensor, for an implausible value).
    """
    stored = {p.key: p.value for p in model.metadata_props}.get(HASH_METADATA_KEY)
    if stored is not None:
        if stored != onnx_content_hash(model, path):
            raise CheckpointError(
                f"{path}: content hash mismatch: the weights differ from what `hydranet export` wrote "
                "(damaged or edited file)"
            )
        return
    for name, tensor in _tensors(model):
        arr = _array(name, tensor, path)
        if arr.size == 0 or not np.issubdtype(arr.dtype, np.floating):
            continue
        if not np.isfinite(arr).all():
            raise CheckpointError(
                f"{path}: implausible weights: tensor {name!r} holds non-finite values (damaged file?)"
            )
        peak = float(np.abs(arr).max())
        if peak > MAX_ABS_ONNX_VALUE:
            raise CheckpointError(
                f"{path}: implausible weights: tensor {name!r} holds a value of magnitude {peak:.3g}, beyond "
                f"{MAX_ABS_ONNX_VALUE:g} (damaged file?)"
            )
