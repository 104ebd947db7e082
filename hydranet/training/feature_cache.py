"""``train.cache_features``: compute the frozen trunk's output once, train the heads from it.

With the encoder and decoder frozen (``train.freeze: [encoder, decoder]``) and no random
augmentation, every training image always gives the same trunk output, so it is computed
once: what the heads read (the decoder's map for dense heads, the encoder's global feature
for image-level heads) and the collated targets are written to ``.npy`` files in
``<run>/features/`` and read back memory-mapped; each step then runs the heads only.

The size is printed before the pass over the data and a cache above ``train.cache_max_gb``
is refused. A random crop (images larger than ``transforms.size``) is taken once: the cache
holds one fixed copy per image, that of epoch 0. Single process only.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data import make_collate
from ..errors import ConfigError
from ..tasks import TaskSpec
from .freeze import is_frozen

# transforms keys that draw at random in the training pipeline, and their "off" value
RANDOM_TRANSFORMS = {"scale": None, "rotate": 0, "color_jitter": 0, "hflip": 0}


def augmentation_problems(train_cfg, where: str = "data.train") -> list[str]:
    """The random augmentations of ``data.train`` (one entry or a list), each naming its field."""
    entries = train_cfg if isinstance(train_cfg, (list, tuple)) else [train_cfg]
    problems = []
    for i, entry in enumerate(entries):
        prefix = f"{where}[{i}]" if isinstance(train_cfg, (list, tuple)) else where
        tf = dict((entry or {}).get("transforms") or {}) if isinstance(entry, Mapping) else {}
        for key, off in RANDOM_TRANSFORMS.items():
            value = tf.get(key, 0.5 if key == "hflip" else off)
            random = value is not None and list(value) != [1, 1] if key == "scale" else bool(value)
            if random:
                default = " (the default)" if key not in tf else ""
                problems.append(f"{prefix}.transforms.{key}: {value!r}{default} draws at random (set it to {off!r})")
    return problems


def check_cacheable(model, train_cfg, world_size: int) -> None:
    """ConfigError naming what prevents ``train.cache_features``."""

    problems = []
    for part in ("encoder", "decoder"):
        module = getattr(model, part)
        if list(module.parameters()) and not is_frozen(module):
            problems.append(f"the {part} is not frozen (add {part} to train.freeze)")
    problems += augmentation_problems(train_cfg)
    if world_size > 1:
        problems.append("torchrun: the feature cache trains in one process")
    if problems:
        raise ConfigError(
            "train.cache_features: the trunk's output must be the same at every epoch; " + "; ".join(problems)
        )


class FeatureCache(Dataset):
    """The cached trunk output and targets of a training set, memory-mapped (see the module docstring)."""

    def __init__(self, folder: Path, tasks: Sequence[TaskSpec]):
        self.folder = Path(folder)
        self.tasks = list(tasks)
        meta = torch.load(self.folder / "meta.pt", weights_only=True)
        self.size = tuple(meta["size"])
        self.length = int(meta["length"])
        self.shared = np.load(self.folder / "shared.npy", mmap_mode="r") if meta["shared"] else None
        self.global_ = np.load(self.folder / "global.npy", mmap_mode="r") if meta["global"] else None
        self.targets = {t.name: np.load(self.folder / f"target_{t.name}.npy", mmap_mode="r") for t in self.tasks}
        self.present = np.load(self.folder / "present.npy", mmap_mode="r")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        return {
            "shared": None if self.shared is None else torch.from_numpy(np.array(self.shared[i])),
            "global": None if self.global_ is None else torch.from_numpy(np.array(self.global_[i])),
            "targets": {k: torch.from_numpy(np.array(v[i])) for k, v in self.targets.items()},
            "present": {t.name: bool(self.present[i, j]) for j, t in enumerate(self.tasks)},
        }

    @classmethod
    def build(
        cls,
        model,
        dataset: Dataset,
        tasks: Sequence[TaskSpec],
        folder: Path,
        batch_size: int,
        device: torch.device,
        max_gb: float,
        log=print,
    ) -> FeatureCache:
        """Run the trunk once over ``dataset`` (in index order) and write the cache to ``folder``.

        Raises:
            ConfigError: the cache would exceed ``max_gb`` (nothing is written then).
        """

        collate = make_collate(tasks)
        n = len(dataset)
        batches = (collate([dataset[j] for j in range(i, min(n, i + batch_size))]) for i in range(0, n, batch_size))
        first = next(batches)
        shared, global_ = trunk_output(model, first["image"], device)
        per_sample = sum(
            int(np.prod(t.shape[1:])) * t.element_size()
            for t in [x for x in (shared, global_) if x is not None] + list(first["targets"].values())
        )
        total_gb = n * (per_sample + len(tasks)) / 1e9
        log(
            f"feature cache: {n} samples x {per_sample / 1e6:.2f} MB = {total_gb:.3f} GB in {folder} "
            f"(limit train.cache_max_gb = {max_gb:g})"
        )
        if total_gb > max_gb:
            raise ConfigError(
                f"train.cache_features: the cache would take {total_gb:.2f} GB, above train.cache_max_gb = "
                f"{max_gb:g}; raise the limit or train without the cache"
            )
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)

        def open_array(name: str, example: torch.Tensor):
            return np.lib.format.open_memmap(
                folder / f"{name}.npy", mode="w+", dtype=_np_dtype(example), shape=(n, *example.shape[1:])
            )

        out_shared = open_array("shared", shared) if shared is not None else None
        out_global = open_array("global", global_) if global_ is not None else None
        out_targets = {k: open_array(f"target_{k}", v) for k, v in first["targets"].items()}
        present = np.lib.format.open_memmap(folder / "present.npy", mode="w+", dtype=np.bool_, shape=(n, len(tasks)))
        start, batch = 0, first
        while batch is not None:
            if batch is not first:
                shared, global_ = trunk_output(model, batch["image"], device)
            stop = start + len(batch["image"])
            if out_shared is not None:
                out_shared[start:stop] = shared.cpu().numpy()
            if out_global is not None:
                out_global[start:stop] = global_.cpu().numpy()
            for k, v in batch["targets"].items():
                out_targets[k][start:stop] = v.numpy()
            for j, t in enumerate(tasks):
                present[start:stop, j] = batch["present"][t.name].numpy()
            start = stop
            batch = next(batches, None)
        for array in [out_shared, out_global, present, *out_targets.values()]:
            if array is not None:
                array.flush()
        size = tuple(int(s) for s in first["image"].shape[-2:])
        meta = {"size": size, "length": n, "shared": out_shared is not None, "global": out_global is not None}
        torch.save(meta, folder / "meta.pt")
        return cls(folder, tasks)


def _np_dtype(t: torch.Tensor):
    return torch.empty((), dtype=t.dtype).numpy().dtype


@torch.no_grad()
def trunk_output(model, images: torch.Tensor, device: torch.device) -> tuple:
    """What the heads read: the decoder's map (if any head is dense) and the encoder's global feature."""
    images = images.to(device)
    dense = any(t.dense for t in model.tasks)
    features, global_feature = model.encoder.encode(images, dense=dense)
    shared = model.decoder(features).float() if dense else None
    needs_global = any(not t.dense for t in model.tasks)
    return shared, (global_feature.float() if needs_global and global_feature is not None else None)


def collate_cached(items: Sequence[dict]) -> dict:
    """Stack cached items into a batch: ``shared``, ``global``, ``targets``, ``present``."""
    first = items[0]
    return {
        "shared": None if first["shared"] is None else torch.stack([i["shared"] for i in items]),
        "global": None if first["global"] is None else torch.stack([i["global"] for i in items]),
        "targets": {k: torch.stack([i["targets"][k] for i in items]) for k in first["targets"]},
        "present": {k: torch.tensor([i["present"][k] for i in items]) for k in first["present"]},
    }


def cached_batch_to(batch: dict, device: torch.device) -> dict:
    """Move a cached batch to ``device``."""

    def move(t: Optional[torch.Tensor]):
        return None if t is None else t.to(device, non_blocking=True)

    return {
        "shared": move(batch["shared"]),
        "global": move(batch["global"]),
        "ids": [],
        "targets": {k: v.to(device) for k, v in batch["targets"].items()},
        "present": {k: v.to(device) for k, v in batch["present"].items()},
    }
