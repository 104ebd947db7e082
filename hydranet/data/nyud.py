"""NYUDv2 read directly from the official labelled file ``nyu_depth_v2_labeled.mat``.

The file is MATLAB v7.3, i.e. HDF5; h5py shows MATLAB arrays with their dimensions reversed.
MATLAB's ``images`` is H x W x 3 x N (480 x 640 x 3 x 1449), so h5py sees ``(N, 3, W, H)``;
``depths`` (float metres) and ``labels`` (raw ids 0..894, 0 = unlabelled) are H x W x N in
MATLAB and ``(N, W, H)`` in h5py. One frame is read at a time and transposed back to H x W.

The 894 raw classes map to the 40 classes of Gupta et al. (CVPR 2013) through ``mapClass``
of ``classMapping40.mat`` (raw id r -> class ``mapClass[r-1]`` in 1..40, stored here as
0..39; raw 0 -> 255). The standard split is ``trainNdxs``/``testNdxs`` of ``splits.mat``
(795/654 one-based frame indices). Both are shipped as text files in ``hydranet/data/nyud/``
(``mapping40.txt``, ``class_names40.txt``, ``train.txt``, ``test.txt``, converted from those
.mat files); your own copies (.mat v5 or v7.3, or text) can be passed instead.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Union

import numpy as np

from ..errors import ConfigError, DataError
from ..labelsets import NYUD40_NAMES
from ..tasks import TaskSpec
from .base import LabelledDataset
from .sample import task_field

log = logging.getLogger("hydranet.data")

NYUD_DIR = Path(__file__).with_name("nyud")
NYUD_NUM_CLASSES = 40
NYUD_IGNORE = 255
NYUD_MAX_DEPTH = 10.0
#: dataset field -> key in the .mat file (other field names are used as keys directly)
# The labelled .mat file's label arrays: default HDF5 key of the task kinds it has labels for.
FIELD_KEYS = {"segmentation": "labels", "depth": "depths"}
SPLITS = ("train", "test", "all")


def load_mat(path: Union[str, Path], keys: Sequence[str]) -> dict:
    """Read ``keys`` from a MATLAB file (v5 via scipy, v7.3 via h5py) as numpy arrays.

    DataError names the file if it is missing, not a MATLAB file, or lacks a key.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: .mat file not found")
    import h5py

    if h5py.is_hdf5(str(path)):  # MATLAB v7.3 = HDF5 (dimensions reversed; callers flatten vectors)
        try:
            with h5py.File(path, "r") as f:
                data = {k: np.asarray(f[k]) for k in keys if k in f and isinstance(f[k], h5py.Dataset)}
        except OSError as exc:
            raise DataError(f"{path}: not a readable MATLAB v7.3 (HDF5) file: {exc}") from exc
    else:
        import scipy.io

        try:
            data = scipy.io.loadmat(str(path), variable_names=list(keys))
        except Exception as exc:  # scipy raises several types for non-MATLAB files
            raise DataError(f"{path}: not a readable MATLAB file: {exc}") from exc
    for key in keys:
        if key not in data:
            raise DataError(f"{path}: missing key {key!r} (expected keys: {', '.join(keys)})")
    return data


def _read_ints(path: Path) -> np.ndarray:
    try:
        return np.loadtxt(path, dtype=np.int64, ndmin=1, comments="#")
    except Exception as exc:
        raise DataError(f"{path}: cannot read integer list: {exc}") from exc


def load_mapping40(mapping=None) -> np.ndarray:
    """The 894-entry raw-id -> 1..40 table, from the shipped file, a .mat (``mapClass``), a text
    file, or an array."""
    source = "mapping"
    if mapping is None:
        path = NYUD_DIR / "mapping40.txt"
        arr, source = _read_ints(path), str(path)
    elif isinstance(mapping, (str, Path)):
        path = Path(mapping)
        source = str(path)
        if path.suffix.lower() == ".mat":
            arr = load_mat(path, ["mapClass"])["mapClass"]
        else:
            if not path.is_file():
                raise DataError(f"{path}: mapping file not found")
            arr = _read_ints(path)
    else:
        arr = mapping
    arr = np.asarray(arr).astype(np.int64).reshape(-1)
    if arr.size == 0 or arr.min() < 1 or arr.max() > NYUD_NUM_CLASSES:
        raise DataError(
            f"{source}: mapping values must be in 1..{NYUD_NUM_CLASSES}, got "
            f"{arr.min() if arr.size else '-'}..{arr.max() if arr.size else '-'}"
        )
    return arr


def mapping_lut(mapping40: np.ndarray) -> np.ndarray:
    """A lookup table indexed by raw id: 0 -> 255, r -> mapping40[r-1] - 1 (0-based class)."""
    lut = np.empty(len(mapping40) + 1, dtype=np.uint8)
    lut[0] = NYUD_IGNORE
    lut[1:] = mapping40 - 1
    return lut


def load_splits(splits=None) -> dict:
    """``{"train": idx, "test": idx}`` (1-based frame indices) from the shipped files, a .mat
    (``trainNdxs``, ``testNdxs``), a folder with ``train.txt``/``test.txt``, or a mapping."""
    if splits is None or (isinstance(splits, (str, Path)) and Path(splits).is_dir()):
        folder = NYUD_DIR if splits is None else Path(splits)
        out = {}
        for name in ("train", "test"):
            path = folder / f"{name}.txt"
            if not path.is_file():
                raise DataError(f"{path}: split file not found")
            out[name] = _read_ints(path)
        return out
    if isinstance(splits, (str, Path)):
        data = load_mat(splits, ["trainNdxs", "testNdxs"])
        return {
            "train": np.asarray(data["trainNdxs"]).astype(np.int64).reshape(-1),
            "test": np.asarray(data["testNdxs"]).astype(np.int64).reshape(-1),
        }
    if isinstance(splits, Mapping):
        return {k: np.asarray(v, dtype=np.int64).reshape(-1) for k, v in splits.items()}
    raise ConfigError(f"splits: expected None, a path or a mapping, got {type(splits).__name__}")


def nyud40_class_names() -> list[str]:
    """The 40 class names of the NYUD-40 mapping in class-id order (``hydranet.labelsets.NYUD40_NAMES``)."""
    return list(NYUD40_NAMES)


def nyud_tasks() -> list[TaskSpec]:
    """The default NYUD tasks: ``segm`` (40 classes, named) and ``depth`` (capped at 10 m in evaluation)."""
    return [
        TaskSpec("segm", "segmentation", classes=NYUD_NUM_CLASSES, class_names=tuple(nyud40_class_names())),
        TaskSpec("depth", "depth", options={"max_depth": NYUD_MAX_DEPTH}),
    ]


class NYUDv2Mat(LabelledDataset):
    """Frames of the official labelled NYUDv2 file, read lazily (one frame per access).

    The HDF5 file is opened on first access in each process (so DataLoader workers each get
    their own handle) and never loaded whole.

    Args:
        mat_path: ``nyu_depth_v2_labeled.mat``.
        split: ``"train"`` (795 frames), ``"test"`` (654; ``"val"`` is an alias) or ``"all"``.
        tasks: task specs (default :func:`nyud_tasks`: ``segm`` 40 classes + ``depth``);
            segmentation reads ``labels`` (mapped to 40 classes), depth reads ``depths`` (metres).
            ``fields`` may name another key, e.g. ``{"depth": "rawDepths"}``.
        mapping: raw -> 40 mapping (default: shipped; or a .mat/.txt path, or an array).
        splits: split indices (default: shipped; or a .mat path, a folder, or a mapping).
        transform: ``transform(raw_sample, tasks) -> item``.
        skip_bad: skip frames that fail to load or check.
    """

    def __init__(
        self,
        mat_path: Union[str, Path],
        split: str = "train",
        tasks: Optional[Sequence[TaskSpec]] = None,
        mapping=None,
        splits=None,
        transform: Optional[Callable] = None,
        fields: Optional[Mapping[str, str]] = None,
        skip_bad: bool = False,
    ):
        super().__init__(nyud_tasks() if tasks is None else tasks, fields, transform, skip_bad)
        self.mat_path = Path(mat_path)
        split = "test" if split == "val" else split
        if split not in SPLITS:
            raise ConfigError(f"split: {split!r} is not one of {', '.join(SPLITS)} (or 'val')")
        self.split = split
        self.lut = mapping_lut(load_mapping40(mapping))
        self.keys = {}
        for spec in self.tasks:
            field = task_field(spec, self.fields)
            if spec.kind not in FIELD_KEYS:
                log.info("%s: NYUDv2Mat has no %s labels; task %r is absent", self.mat_path, spec.kind, spec.name)
                continue
            if spec.classes is not None and spec.classes < NYUD_NUM_CLASSES:
                raise ConfigError(f"task {spec.name!r}: NYUD-40 labels need classes >= 40, got {spec.classes}")
            self.keys[spec.name] = FIELD_KEYS.get(field, field)
        n = self._inspect()
        if split == "all":
            frames = np.arange(1, n + 1)
        else:
            frames = load_splits(splits).get(split)
            if frames is None:
                raise DataError(f"splits: no {split!r} split given")
            if frames.size and (frames.min() < 1 or frames.max() > n):
                raise DataError(
                    f"{self.mat_path}: {split} split index {int(frames.max())} is outside the "
                    f"file's {n} frames (indices are 1-based)"
                )
        self.frames = [int(i) for i in frames]
        self._h5 = None
        self._pid = None

    def _inspect(self) -> int:
        """Check the file's keys and shapes; return its number of frames."""
        if not self.mat_path.is_file():
            raise DataError(f"{self.mat_path}: NYUDv2 .mat file not found")
        import h5py

        try:
            f = h5py.File(self.mat_path, "r")
        except OSError as exc:
            raise DataError(f"{self.mat_path}: not a MATLAB v7.3 (HDF5) file: {exc}") from exc
        with f:
            for key in ["images", *self.keys.values()]:
                if key not in f:
                    raise DataError(f"{self.mat_path}: missing key {key!r}")
            images = f["images"]
            if images.ndim != 4 or images.shape[1] != 3:
                raise DataError(f"{self.mat_path}: 'images' must be (N, 3, W, H) in HDF5 order, got {images.shape}")
            n, _, w, h = images.shape
            for key in self.keys.values():
                if f[key].shape != (n, w, h):
                    raise DataError(
                        f"{self.mat_path}: {key!r} has shape {f[key].shape}, expected {(n, w, h)} like 'images'"
                    )
        return n

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_h5"], state["_pid"] = None, None
        return state

    def _file(self):
        if self._h5 is None or self._pid != os.getpid():
            import h5py

            self._h5 = h5py.File(self.mat_path, "r")
            self._pid = os.getpid()
        return self._h5

    def close(self) -> None:
        """Close this process's file handle (reopened on the next access)."""
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __len__(self) -> int:
        return len(self.frames)

    def sample_id(self, index: int) -> str:
        return f"{self.frames[index]:06d}"

    def load_raw(self, index: int) -> tuple[dict, dict]:
        frame = self.frames[index]
        where = f"{self.mat_path} frame {frame}"
        f = self._file()
        try:
            image = np.asarray(f["images"][frame - 1]).transpose(2, 1, 0)
            sample = {"image": np.ascontiguousarray(image, dtype=np.uint8), "id": self.sample_id(index)}
            sources = {"image": where}
            for spec in self.tasks:
                key = self.keys.get(spec.name)
                if key is None:
                    continue
                arr = np.asarray(f[key][frame - 1]).T
                sources[spec.name] = f"{where} ({key})"
                # segmentation arrays hold raw NYUD ids (mapped to 40 classes), depth arrays metres
                convert = self._map_labels if spec.classes is not None else (lambda a, _: _metres(a))
                sample[spec.name] = convert(arr, where)
        except (OSError, KeyError) as exc:
            raise DataError(f"{where}: cannot read: {exc}") from exc
        return sample, sources

    def _map_labels(self, raw: np.ndarray, where: str) -> np.ndarray:
        raw = raw.astype(np.int64)
        if raw.min() < 0 or raw.max() >= len(self.lut):
            raise DataError(f"{where}: raw label {int(raw.max())} outside the mapping's 0..{len(self.lut) - 1}")
        return self.lut[raw].astype(np.int64)


def _metres(raw: np.ndarray) -> np.ndarray:
    """The .mat depth array as float32 metres, invalid (non-finite, negative) -> 0."""
    depth = np.ascontiguousarray(raw, dtype=np.float32)
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth
