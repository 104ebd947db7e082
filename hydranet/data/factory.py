"""``build_dataset(cfg, tasks, train)``: a dataset from a config mapping.

``cfg["type"]`` picks the dataset; the other keys are its arguments, plus ``transforms`` (a
mapping for :func:`~hydranet.data.transforms.build_transforms`; the train pipeline when
``train`` is true, else the eval one). Examples::

    {"type": "synthetic", "num_samples": 512, "size": [64, 64], "seed": 0}
    {"type": "list", "list": "nyud/train.txt", "depth_scale": 5000, "transforms": {"size": [240, 320]}}
    {"type": "kitti", "list": "kitti/train.txt"}
    {"type": "nyud_mat", "mat": "nyu_depth_v2_labeled.mat", "split": "train"}
    {"type": "json", "json": "parts/train.json", "vocab": "parts/vocab.json"}
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, List, Literal, Mapping, Optional, Sequence

from ..config import parse_dataset
from ..errors import DataError
from ..schema.registry import register_options
from ..schema.sections import TransformsSection
from ..schema.types import Bool, Field, Float, Int, Name, Palette, PixelSize, Section, Str, either, is_list, is_mapping
from ..tasks import TaskSpec, parse_tasks
from .jsonset import JsonDataset
from .kitti import KittiDataset
from .listfile import ListDataset
from .nyud import NYUDv2Mat
from .synthetic import SyntheticScenes
from .transforms import IMAGENET, build_transforms

Fraction = Annotated[Float, Field(ge=0, le=1)]


class DatasetOptions(Section):
    """Keys every data set type takes (the last four when it is one of several, see :mod:`.multi`)."""

    transforms: Optional[TransformsSection] = Field(None, description="augmentation (train) / resizing (eval)")
    fields: Optional[dict[Str, Str]] = Field(
        None, description="{task: field of the data set} when a task's name is not the field's"
    )
    name: Optional[Annotated[Name, Field(pattern=r"^[^/]+$")]] = Field(
        None, description="several data sets: its name in logs and metrics (nyud/segm/miou; default set<i>)"
    )
    weight: Optional[Float] = Field(None, gt=0, description="several data sets: sampling weight (default 1)")
    tasks: Optional[
        either(
            "a mapping {task: label field} or a list of task names",
            mapping=(dict[Str, Optional[Str]], is_mapping),
            list=(list[Str], is_list),
        )
    ] = Field(None, description="the tasks this data set labels and from which field (others: missing labels)")
    class_offset: Optional[dict[Str, Annotated[Int, Field(ge=0)]]] = Field(
        None, description="one head over several data sets: {task: first class id of this set in the head}"
    )


class FileDatasetOptions(DatasetOptions):
    """Keys of the data sets read from files."""

    root: Optional[Str] = Field(None, description="folder the file paths are relative to (null: the list's folder)")
    skip_bad: Bool = Field(False, description="skip unreadable samples (logged) instead of stopping")


class SyntheticOptions(DatasetOptions):
    """``type: synthetic``: rendered scenes with every label, generated on the fly (no files)."""

    type: Literal["synthetic"] = Field(description="the data set type")
    num_samples: Optional[Int] = Field(
        None, ge=1, le=10_000_000, description="samples per epoch (null: 1000 for training, 200 for evaluation)"
    )
    size: Optional[PixelSize] = Field(None, description="[height, width] rendered (null: transforms.size, else 64)")
    seed: Int = Field(0, ge=0, description="seed of the scenes")
    split: Optional[Literal["train", "val", "test"]] = Field(
        None, description="independent scene stream (null: train for training, val for evaluation)"
    )
    max_objects: Int = Field(6, ge=0, le=1000, description="objects per scene at most")
    label_dropout: Optional[dict[Str, Fraction]] = Field(
        None, description="{task: fraction of samples whose label is left out} (partial labels)"
    )


class ListOptions(FileDatasetOptions):
    """``type: list``: a list file of image and label paths (NYUD-style)."""

    type: Literal["list"] = Field(description="the data set type")
    list: Name = Field(description="the list file (one sample per line; optional header naming the columns)")
    depth_scale: Optional[Float] = Field(None, gt=0, description="depth PNG units per metre (null: 5000, NYUD's)")
    palette: Optional[Palette] = Field(None, description="colours of colour-coded segmentation PNGs")
    columns: Optional[List[Str]] = Field(None, description="the columns, when the list has no header")


class KittiOptions(ListOptions):
    """``type: kitti``: a KITTI list file (sparse depth in 1/256 m)."""

    type: Literal["kitti"] = Field(description="the data set type")
    depth_scale: Optional[Float] = Field(None, gt=0, description="depth PNG units per metre (null: 256, KITTI's)")


class NyudMatOptions(DatasetOptions):
    """``type: nyud_mat``: the labelled NYUDv2 .mat file."""

    type: Literal["nyud_mat"] = Field(description="the data set type")
    mat: Name = Field(description="nyu_depth_v2_labeled.mat")
    split: Optional[Literal["train", "test", "val", "all"]] = Field(
        None, description="frames (null: train for training, test for evaluation; val = test)"
    )
    mapping: Optional[Str] = Field(None, description="894 -> 40 class mapping file (null: the shipped one)")
    splits: Optional[Str] = Field(None, description="train/test split file or folder (null: the shipped one)")
    skip_bad: Bool = Field(False, description="skip unreadable samples (logged) instead of stopping")


class JsonOptions(FileDatasetOptions):
    """``type: json``: image-level records in a JSON file."""

    type: Literal["json"] = Field(description="the data set type")
    json_file: Name = Field(alias="json", description="the JSON file of records ({image, task: value, ...})")
    vocab: Optional[Str] = Field(None, description="class vocabulary file (null: built from the records)")
    depth_scale: Optional[Float] = Field(None, gt=0, description="depth PNG units per metre (null: 5000)")
    palette: Optional[Palette] = Field(None, description="colours of colour-coded segmentation PNGs")


# Options naming a file the data set reads, {field: its key in the config}: a missing file is an
# error naming the option.
FILE_KEYS = {
    "list": "list",
    "mat": "mat",
    "json_file": "json",
    "vocab": "vocab",
    "mapping": "mapping",
    "splits": "splits",
}

# type -> (class, options schema, {config key: argument name})
DATASET_TYPES = {
    "synthetic": (SyntheticScenes, SyntheticOptions, {}),
    "list": (ListDataset, ListOptions, {"list": "list_file"}),
    "kitti": (KittiDataset, KittiOptions, {"list": "list_file"}),
    "nyud_mat": (NYUDv2Mat, NyudMatOptions, {"mat": "mat_path"}),
    "json": (JsonDataset, JsonOptions, {}),
}
for _name, (_cls, _model, _rename) in DATASET_TYPES.items():
    register_options("dataset", _name, _model)


def build_dataset(cfg: Mapping[str, Any], tasks: Sequence[TaskSpec], train: bool, normalization=None):
    """Build a dataset from ``cfg`` (see the module docstring) for ``tasks``.

    Defaults that depend on ``train``: the synthetic ``split`` ("train" / "val"), NYUD's
    ``split`` ("train" / "test"), and the synthetic ``num_samples`` (1000 / 200). The synthetic
    set renders at ``size`` (default the transforms' size, else 64 x 64). ``normalization``
    (a :class:`~hydranet.data.transforms.Normalization`, default ImageNet's) is the network's.

    Raises:
        ConfigError: an unknown type (listing the valid ones), a missing or unknown key.
    """
    where = "data.train" if train else "data.val"
    options = parse_dataset(cfg, where)
    cls, _, rename = DATASET_TYPES[options.type]
    tasks = parse_tasks(list(tasks))
    member = {"name", "weight", "tasks", "class_offset"}  # how a run uses the set (.multi), not the set
    given = options.model_dump(exclude_unset=True, exclude_none=True, exclude={"type", "transforms", *member})
    for key in FILE_KEYS.keys() & given.keys():  # the error names the field, not only the path in it
        if not Path(given[key]).exists():
            raise DataError(f"{where}.{FILE_KEYS[key]}: the file {given[key]!r} does not exist")
    kwargs = {rename.get(k, k): v for k, v in given.items()}
    tf = options.transforms or TransformsSection()
    if options.type == "synthetic":
        kwargs.setdefault("split", "train" if train else "val")
        kwargs.setdefault("num_samples", 1000 if train else 200)
        kwargs.setdefault("size", tf.size or (64, 64))
    if options.type == "nyud_mat":
        kwargs.setdefault("split", "train" if train else "test")
    transform = build_transforms(tf, train=train, normalization=normalization or IMAGENET)
    return cls(tasks=tasks, transform=transform, **kwargs)
