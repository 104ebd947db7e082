"""A training config for JSON image-level targets, as users of uncertainty-weighting trainers pass them.

``hydranet train --train_json train.json --val_json val.json`` with no ``--config``
infers one task per target field of the training records:

* any float value -> ``regression`` (1 output; mean/std normalisation from the training set);
* all strings -> ``classification`` with the sorted names as classes;
* all integers -> ``classification`` with ids ``0 .. max`` as classes.

Pass a config with explicit ``tasks`` to decide otherwise.
"""

from __future__ import annotations

import math
from typing import Optional

from ..data.jsonset import read_records
from ..errors import DataError

RESERVED = {"image", "id", "segmentation", "depth", "normals"}


def infer_json_tasks(records: list[dict], source: str = "train json") -> list[dict]:
    """Task mappings for the target fields of ``records`` (see the module docstring)."""
    names = []
    for rec in records:
        names += [k for k in rec if k not in RESERVED and k not in names]
    tasks = []
    for name in names:
        values = [r[name] for r in records if r.get(name) is not None]
        if not values:
            continue
        if all(isinstance(v, str) for v in values):
            tasks.append(
                {
                    "name": name,
                    "kind": "classification",
                    "classes": len(set(values)),
                    "class_names": sorted(set(values)),
                }
            )
        elif any(isinstance(v, bool) for v in values):
            raise DataError(f"{source}: field {name!r} holds true/false; give class ids, class names or numbers")
        elif all(isinstance(v, int) for v in values):
            if min(values) < 0:
                raise DataError(f"{source}: field {name!r} holds the negative class id {min(values)}; ids start at 0")
            tasks.append({"name": name, "kind": "classification", "classes": max(values) + 1})
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) or 1.0
            tasks.append(
                {"name": name, "kind": "regression", "outputs": 1, "options": {"target_mean": mean, "target_std": std}}
            )
        else:
            raise DataError(f"{source}: field {name!r} mixes strings and numbers; give the tasks in a config")
    if not tasks:
        raise DataError(f"{source}: no target fields besides 'image'")
    return tasks


def json_training_config(train_json: str, val_json: Optional[str] = None, size=(224, 224)) -> dict:
    """A complete config (model, tasks, data) training on JSON image-level targets."""
    tasks = infer_json_tasks(read_records(train_json), train_json)
    h, w = size
    transforms = {"size": [h, w]}
    data = {"train": {"type": "json", "json": train_json, "transforms": {**transforms, "hflip": 0.5}}}
    if val_json:
        data["val"] = {"type": "json", "json": val_json, "transforms": transforms}
    return {
        "model": {"encoder": "mobilenet_v2", "encoder_weights": "imagenet", "decoder": "lightweight"},
        "tasks": tasks,
        "data": data,
        "train": {"steps": 2000, "batch_size": 16, "monitor": "loss"},
        "loss": {"weighting": "uncertainty"},
    }
