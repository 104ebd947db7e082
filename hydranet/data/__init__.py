"""Data: datasets, joint transforms and batching.

A dataset item is a dict ``{"image": float32 3 x H x W (ImageNet-normalised RGB), "id": str,
<task name>: label tensor, ...}`` with one entry per task that has a label for the sample
(see :mod:`hydranet.data.sample`); :func:`collate` stacks items into
``{"image", "ids", "targets", "present"}`` (see :mod:`hydranet.data.collate`).
"""

from .base import LabelledDataset
from .collate import batch_to, collate, make_collate
from .factory import DATASET_TYPES, build_dataset
from .io import read_depth, read_image, read_normals, read_segmentation
from .jsonset import JsonDataset, build_vocab, load_vocab, save_vocab
from .kitti import KITTI_MAX_DEPTH, KittiDataset, read_kitti_depth
from .listfile import ListDataset
from .nyud import NYUD_MAX_DEPTH, NYUDv2Mat, load_mapping40, load_splits, nyud40_class_names, nyud_tasks
from .sample import task_field, to_tensor_sample
from .synthetic import SYNTHETIC_CLASSES, SyntheticScenes, render_clip, render_scene, sample_scene, synthetic_tasks
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    JointTransform,
    build_transforms,
    denormalize_image,
    normalize_image,
)

__all__ = [
    "batch_to",
    "LabelledDataset",
    "SyntheticScenes",
    "ListDataset",
    "KittiDataset",
    "NYUDv2Mat",
    "JsonDataset",
    "build_dataset",
    "DATASET_TYPES",
    "collate",
    "make_collate",
    "build_transforms",
    "JointTransform",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "normalize_image",
    "denormalize_image",
    "to_tensor_sample",
    "task_field",
    "read_image",
    "read_segmentation",
    "read_depth",
    "read_normals",
    "read_kitti_depth",
    "KITTI_MAX_DEPTH",
    "NYUD_MAX_DEPTH",
    "load_mapping40",
    "load_splits",
    "nyud40_class_names",
    "nyud_tasks",
    "build_vocab",
    "save_vocab",
    "load_vocab",
    "SYNTHETIC_CLASSES",
    "synthetic_tasks",
    "render_scene",
    "render_clip",
    "sample_scene",
]
