"""Deterministic, resumable batch order (also sharded across torch.distributed ranks)."""

from __future__ import annotations

import random
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


class ResumableBatchSampler(Sampler[list[int]]):
    """Batches of one epoch: a permutation seeded by ``(seed, epoch)``, sharded by rank.

    ``order(seed, epoch)``, when given, is the epoch's sequence of indices instead (several
    data sets, see :meth:`hydranet.data.multi.MultiDataset.epoch_order`).
    ``start_batch`` skips the batches already consumed, so a resumed run sees exactly
    the batches an uninterrupted run would have seen. Incomplete last batches are dropped
    so every rank runs the same number of steps.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        start_batch: int = 0,
        order: Optional[Callable[[int, int], list]] = None,
    ):
        self.size, self.batch_size, self.seed, self.epoch = size, batch_size, seed, epoch
        self.order = order
        self.rank, self.world_size, self.shuffle, self.start_batch = rank, world_size, shuffle, start_batch
        if self.batches_per_epoch(size, batch_size, world_size) == 0:
            raise ValueError(
                f"dataset of {size} samples is smaller than one batch of {batch_size} x {world_size} process(es)"
            )

    @staticmethod
    def batches_per_epoch(size: int, batch_size: int, world_size: int = 1) -> int:
        return size // (batch_size * world_size)

    def __len__(self) -> int:
        return self.batches_per_epoch(self.size, self.batch_size, self.world_size) - self.start_batch

    def __iter__(self) -> Iterator[list[int]]:
        if self.order is not None:  # several data sets: their weighted epoch (same on every rank)
            order = self.order(self.seed, self.epoch)
        elif self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        n = self.batches_per_epoch(self.size, self.batch_size, self.world_size)
        per_rank = order[self.rank : n * self.batch_size * self.world_size : self.world_size]
        for b in range(self.start_batch, n):
            yield per_rank[b * self.batch_size : (b + 1) * self.batch_size]


class SeededSamples(Dataset):
    """Seeds Python, NumPy, torch and the dataset's transform from ``(seed, epoch, index)`` before each item.

    Random augmentation then depends on the sample and the epoch only, not on which
    worker loads it or when the loader was created: what makes resume exact.
    """

    def __init__(self, dataset: Dataset, seed: int = 0):
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        s = (self.seed * 1_000_003 + self.epoch * 10_007 + int(index)) % (2**31)
        random.seed(s)
        np.random.seed(s)
        torch.manual_seed(s)
        transform = getattr(self.dataset, "transform", None)
        if hasattr(transform, "reseed"):
            transform.reseed([self.seed, self.epoch, int(index)])
        return self.dataset[index]
