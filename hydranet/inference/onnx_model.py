"""An exported ONNX file (fp32 or int8) as a model: normalised image batch -> ``{task: tensor}``.

    model = load_onnx_model("model_int8.onnx")
    outputs = model(images)          # N x 3 x H x W float tensor, any size the file allows
    model.tasks, model.config        # from the file's ``hydranet_config`` metadata

Used by ``hydranet eval --weights model.onnx`` so the exported file is scored with the same
evaluation loop and metrics as a checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from ..config import load_config
from ..errors import CheckpointError
from ..jsonfile import parse_json
from ..tasks import parse_tasks
from .export import CONFIG_METADATA_KEY, onnx_runner, onnx_session
from .onnx_integrity import verify_onnx

__all__ = ["OnnxModel", "load_onnx_model", "is_onnx_file"]


def is_onnx_file(path) -> bool:
    """True for a ``.onnx`` path."""
    return Path(str(path)).suffix.lower() == ".onnx"


class OnnxModel:
    """Runs an ONNX file in onnxruntime; called like a HydraNet (input at any size, outputs at input size)."""

    def __init__(self, path, device: str = "cpu", threads: Optional[int] = None):
        import onnx

        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"ONNX file {str(self.path)!r} does not exist")
        try:
            proto = onnx.load(str(self.path), load_external_data=False)
        except Exception as exc:
            raise CheckpointError(f"{self.path}: not a readable ONNX file ({type(exc).__name__}: {exc})") from exc
        verify_onnx(proto, self.path)  # its content hash, or plausible values when it has none
        meta = {p.key: p.value for p in proto.metadata_props}
        del proto
        if CONFIG_METADATA_KEY not in meta:
            raise CheckpointError(
                f"{self.path}: no {CONFIG_METADATA_KEY!r} metadata (export it again with "
                "`hydranet export`, which records the model's tasks in the file)"
            )
        try:
            self.config = load_config(parse_json(meta[CONFIG_METADATA_KEY], f"{self.path} metadata"))
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{self.path}: its {CONFIG_METADATA_KEY!r} metadata is not valid ({exc})") from exc
        self.tasks = parse_tasks(self.config["tasks"])
        self.task_names = [t.name for t in self.tasks]
        self.quantization = meta.get("hydranet_quantization")
        self.session = onnx_session(self.path, device, threads, spin=False)  # PyTorch post-processes between runs
        self._run = onnx_runner(self.session, self.task_names)
        outputs = [o.name for o in self.session.get_outputs()]
        if outputs != self.task_names:
            raise CheckpointError(f"{self.path}: outputs {outputs} are not the tasks {self.task_names} of its config")

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: y.to(images.device) for name, y in self._run(images).items()}


def load_onnx_model(path, device: str = "cpu", threads: Optional[int] = None) -> OnnxModel:
    """The ONNX file at ``path`` as an :class:`OnnxModel` (CheckpointError if it is not a Hydranet export)."""
    return OnnxModel(path, device, threads)
