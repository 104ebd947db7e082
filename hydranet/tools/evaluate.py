"""Evaluate a checkpoint file on a data set named by a config (the work of ``hydranet eval``)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch.utils.data import DataLoader

from ..config import load_config
from ..data import make_collate
from ..data.multi import build_val_sets
from ..data.transforms import Normalization
from ..errors import ConfigError
from ..evaluation import evaluate
from ..inference.fast import optimize_for_inference
from ..inference.onnx_model import is_onnx_file, load_onnx_model
from ..training.settings import apply_overrides
from ..weights.hub import load_model

# The synthetic validation set used when neither the command nor the checkpoint names data.
DEFAULT_VAL = {"type": "synthetic", "split": "val", "num_samples": 64, "size": [128, 160], "seed": 0}


def resolve_val_data(model_config: dict, config: Optional[str] = None, overrides: Sequence[str] = ()) -> dict:
    """The ``data.val`` section to evaluate on: --config's, else the checkpoint's, else synthetic.

    ``overrides`` (``--set``) may change ``data.val`` only: the checkpoint fixes the model and
    the tasks, and eval does not train, so anything else would be accepted and ignored.
    """
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key != "data.val" and not key.startswith("data.val."):
            raise ConfigError(
                f"--set {key}: eval takes the model and tasks from the checkpoint (--weights) and does not "
                "train; only data.val.* can be set (e.g. --set data.val.num_samples=50)"
            )
    source = load_config(config) if config else model_config
    data = {"val": dict((source.get("data") or {}).get("val") or DEFAULT_VAL)}
    wrapped = apply_overrides({"data": data}, list(overrides))
    return wrapped["data"]["val"]


def evaluate_checkpoint(
    weights: str,
    config: Optional[str] = None,
    overrides: Sequence[str] = (),
    device="cpu",
    batch_size: int = 8,
    workers: int = 0,
    fast: bool = True,
    progress: bool = True,
    tune_allocator: bool = False,
) -> dict:
    """Metrics of the checkpoint ``weights`` on its validation data (see :func:`resolve_val_data`).

    ``weights`` may also be an ONNX file written by ``hydranet export`` (fp32 or int8): it is
    run by onnxruntime, its tasks and data come from the config stored in the file.
    ``fast`` runs the optimised inference path (same outputs within 1e-4 relative);
    ``tune_allocator`` see :func:`hydranet.inference.fast.optimize_for_inference`.
    """
    device = torch.device(device)
    if is_onnx_file(weights):
        model = load_onnx_model(weights, device=str(device))
        fast = False  # onnxruntime runs the file as it is
    else:
        model = load_model(weights, device=device)
    val_cfg = resolve_val_data(model.config, config, overrides)
    train_cfg = ((load_config(config) if config else model.config).get("data") or {}).get("train")
    sets = build_val_sets(val_cfg, model.tasks, Normalization.from_config(model.config), train_cfg=train_cfg)
    runner = model
    if fast:
        runner = optimize_for_inference(model, device=device, tune_allocator=tune_allocator)
    results, samples = {}, 0
    for name, (dataset, tasks) in sets.items():
        loader = DataLoader(
            dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=make_collate(tasks)
        )
        results[name] = evaluate(runner, loader, tasks, device, progress=progress)
        samples += len(dataset)
    if None in results:
        result = results[None]
    else:  # named validation sets: "<set>/<task>", as in training
        result = {
            part: {f"{name}/{task}": value for name, r in results.items() for task, value in r[part].items()}
            for part in ("metrics", "loss")
        }
    return {"weights": str(weights), "data": val_cfg, "samples": samples, **result}
