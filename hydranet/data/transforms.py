"""Joint augmentation of a whole sample with albumentations, and ImageNet normalisation.

A transform is called as ``transform(raw_sample, tasks)`` and returns a dataset item (tensors,
see :mod:`hydranet.data.sample`). :class:`JointTransform` applies:

1. photometric transforms (colour jitter, ...) to the image only;
2. geometric transforms (scale, rotation, pad, crop, flip) identically to the image and to every
   dense label, with nearest interpolation for all labels (class ids are never blended and depth
   is never interpolated across invalid pixels). Areas uncovered by padding or rotation become
   invalid: ``ignore_index`` for segmentation, 0 for depth, the zero vector for normals;
3. normals are re-oriented after the geometry: a horizontal flip negates their x component,
   a rotation rotates their (x, y) components (read from the transforms' applied parameters);
4. normalisation and conversion to tensors.

Normals are in the camera frame with x right, y up and z towards the viewer (a surface facing
the camera is (0, 0, 1)).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

from ..errors import DataError
from ..limits import MAX_PIXELS_ENV, max_pixels
from ..schema.errors import validate
from ..schema.sections import ColorJitter, MetaSection, TransformsSection
from ..schema.sections import Normalization as SchemaNormalization
from ..tasks import TaskSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_MEAN = np.array(IMAGENET_MEAN, dtype=np.float32)
_STD = np.array(IMAGENET_STD, dtype=np.float32)
#: padding colour of the image: the ImageNet mean, i.e. zero after normalisation
PAD_RGB = tuple(int(round(m * 255)) for m in IMAGENET_MEAN)


@dataclass(frozen=True)
class Normalization:
    """The input normalisation a network was trained with: ``(rgb / 255 - mean) / std``.

    It travels with the checkpoint (``config["meta"]["normalization"]``), so every front end
    feeds a network what it was trained on; configs without it mean ImageNet's.
    """

    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    @classmethod
    def from_config(cls, config: Optional[Mapping[str, Any]]) -> Normalization:
        """The normalisation of ``config["meta"]["normalization"]`` (ImageNet's when absent)."""
        meta = (config or {}).get("meta") or {}
        raw = meta.get("normalization") if isinstance(meta, Mapping) else validate(MetaSection, meta, "meta")
        if raw is None:
            return cls()
        parsed = validate(SchemaNormalization, raw, "meta.normalization")
        return cls(mean=tuple(parsed.mean), std=tuple(parsed.std))

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}


IMAGENET = Normalization()


def normalize_image(rgb: np.ndarray, normalization: Normalization = IMAGENET) -> torch.Tensor:
    """uint8 RGB H x W x 3 -> float32 3 x H x W: ``(rgb / 255 - mean) / std`` (ImageNet's by default)."""
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"normalize_image expects H x W x 3 RGB, got shape {arr.shape}")
    if normalization == IMAGENET:
        mean, std = _MEAN, _STD
    else:
        mean, std = (np.array(v, dtype=np.float32) for v in (normalization.mean, normalization.std))
    x = (arr.astype(np.float32) / np.float32(255.0) - mean) / std
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def denormalize_image(x: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`normalize_image`: 3 x H x W (or N x 3 x H x W) -> uint8 H x W x 3 (N x H x W x 3)."""
    t = x.detach().float().cpu()
    if t.dim() not in (3, 4) or t.shape[-3] != 3:
        raise ValueError(f"denormalize_image expects 3 x H x W or N x 3 x H x W, got {tuple(t.shape)}")
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    rgb = (t * std + mean) * 255.0
    rgb = rgb.round().clamp(0, 255).to(torch.uint8)
    return rgb.movedim(-3, -1).numpy()


# --------------------------------------------------------------------------- normals re-orientation

_FLIPS = {
    "HorizontalFlip": np.array([[-1.0, 0.0], [0.0, 1.0]]),
    "VerticalFlip": np.array([[1.0, 0.0], [0.0, -1.0]]),
    "Transpose": np.array([[0.0, 1.0], [1.0, 0.0]]),
}


def applied_linear_map(applied: Sequence[tuple]) -> np.ndarray:
    """The 2 x 2 linear part (pixel frame, x right, y down) of the applied geometric transforms.

    Reads albumentations' ``applied_transforms`` list: flips by name, rotations/affines through
    their ``matrix`` parameter. Scales, pads, crops and resizes keep orientation.
    """
    total = np.eye(2)
    for name, params in applied:
        if name in _FLIPS:
            total = _FLIPS[name] @ total
        elif isinstance(params, Mapping) and "matrix" in params:
            m = np.asarray(params["matrix"], dtype=np.float64)
            total = m[:2, :2] @ total
    return total


def reorient_normals(normals: np.ndarray, linear: np.ndarray) -> np.ndarray:
    """Rotate/flip the (x, y) components of H x W x 3 normals by an image-plane linear map.

    ``linear`` acts on pixel coordinates (y down); normals use y up. Normals transform with the
    inverse transpose, scaled to unit determinant, which for rotations and flips is the map itself.
    Zero (invalid) vectors stay zero; vectors are renormalised.
    """
    if np.allclose(linear, np.eye(2)):
        return normals
    q = np.linalg.inv(linear).T
    q = q / np.sqrt(abs(np.linalg.det(q)))
    yflip = np.diag([1.0, -1.0])
    q = (yflip @ q @ yflip).astype(np.float32)  # the same map in the y-up frame
    out = normals.copy()
    xy = normals[..., :2] @ q.T
    out[..., :2] = xy
    norm = np.linalg.norm(out, axis=2, keepdims=True)
    valid = norm > 0
    out = np.where(valid, out / np.maximum(norm, 1e-12), 0.0)
    return out.astype(np.float32)


# --------------------------------------------------------------------------- the joint transform


class JointTransform:
    """Augment a raw sample jointly and return a dataset item (see the module docstring).

    Args:
        geometric: albumentations transforms applied to the image and all dense labels.
        photometric: albumentations transforms applied to the image only (run first).
        seed: seed of the random stream (None: torch's seed). Each DataLoader worker draws its
            own stream from torch's per-worker seed, so workers and epochs differ.
    """

    def __init__(
        self,
        geometric: Sequence[Any] = (),
        photometric: Sequence[Any] = (),
        seed: Optional[int] = None,
        normalization: Normalization = IMAGENET,
        max_scale: float = 1.0,
    ):
        self.normalization = normalization
        self.max_scale = max_scale  # the largest random rescale: checked against the pixel limit per image
        self.geometric = list(geometric)
        self.photometric = list(photometric)
        self.seed = seed
        self._pipelines: dict = {}
        self._pid = None
        self._rng = None
        self._py_rng = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_pipelines"], state["_pid"], state["_rng"], state["_py_rng"] = {}, None, None, None
        return state

    def _reseed(self) -> None:
        """Seed this process's stream. In a DataLoader worker it mixes torch's per-worker seed
        (different per worker and per epoch, reproducible under ``torch.manual_seed``) with
        ``seed``; in the main process it uses ``seed``, or torch's seed when ``seed`` is None."""
        info = torch.utils.data.get_worker_info()
        own = 0 if self.seed is None else int(self.seed)
        if info is not None:
            material = [torch.initial_seed() % (2**63), own]
        else:
            material = [own] if self.seed is not None else [torch.initial_seed() % (2**63)]
        self.reseed(material)

    def reseed(self, material) -> None:
        """Restart the random stream from ``material`` (an int or a list of ints).

        The trainer calls it per sample with (seed, epoch, index), so augmentation does not
        depend on which worker loads a sample: what makes ``--resume`` exact.
        """
        self._rng = np.random.default_rng(np.random.SeedSequence(material))
        self._py_rng = random.Random(int(self._rng.integers(2**63)))
        for pipe in self._pipelines.values():
            if pipe is not None:
                pipe.set_random_state(self._rng, self._py_rng)
        self._pid = os.getpid()

    def _pipeline(self, keys: tuple):
        import albumentations as A
        import cv2

        if keys not in self._pipelines:
            ops = self.photometric + self.geometric
            pipe = (
                A.Compose(
                    ops,
                    additional_targets={k: "mask" for k in keys},
                    mask_interpolation=cv2.INTER_NEAREST,
                    save_applied_params=True,
                )
                if ops
                else None
            )
            if pipe is not None and self._rng is not None:
                pipe.set_random_state(self._rng, self._py_rng)
            self._pipelines[keys] = pipe
        return self._pipelines[keys]

    def __call__(self, sample: dict, tasks: Sequence[TaskSpec]) -> dict:
        if self._pid != os.getpid():
            self._reseed()
        dense = [t for t in tasks if t.dense and sample.get(t.name) is not None]
        keys = tuple(f"label_{t.name}" for t in dense)
        pipe = self._pipeline(keys)
        image = sample["image"]
        if self.max_scale > 1:
            self._check_scaled_size(image, sample)
        labels = {}
        if pipe is not None:
            data = {"image": image}
            for spec, key in zip(dense, keys):
                data[key] = spec.task_kind.to_mask(spec, sample[spec.name])
            out = pipe(**data)
            image = out["image"]
            linear = applied_linear_map(out.get("applied_transforms", []))
            for spec, key in zip(dense, keys):
                labels[spec.name] = spec.task_kind.from_mask(spec, out[key], linear)
        result = dict(sample)
        result["image"] = image
        result.update(labels)
        item = {"image": normalize_image(image, self.normalization), "id": str(sample.get("id", ""))}
        for spec in tasks:
            if result.get(spec.name) is not None:
                item[spec.name] = spec.task_kind.label_to_tensor(spec, result[spec.name])
        return item

    def _check_scaled_size(self, image: np.ndarray, sample: dict) -> None:

        h, w = np.shape(image)[:2]
        scaled = int(h * w * self.max_scale**2)
        if scaled > max_pixels():
            raise DataError(
                f"{sample.get('id') or 'sample'}: a {w}x{h} image rescaled by up to {self.max_scale:g} "
                f"(transforms.scale) is {scaled:,} pixels, above the limit of {max_pixels():,} "
                f"(lower the scale, or raise {MAX_PIXELS_ENV})"
            )

    def __repr__(self) -> str:
        names = [type(t).__name__ for t in self.photometric + self.geometric]
        return f"JointTransform({', '.join(names) or 'normalise only'})"


# --------------------------------------------------------------------------- from a config


def build_transforms(
    cfg: Optional[Mapping[str, Any]], train: bool, size=None, normalization: Normalization = IMAGENET
) -> JointTransform:
    """Build the train or eval pipeline from a config mapping.

    Keys (all optional): ``size`` [H, W] (or the ``size`` argument), ``scale`` [lo, hi] random
    rescale factor, ``hflip`` probability (default 0.5), ``rotate`` max degrees (default 0),
    ``color_jitter`` strength (a number, or a mapping of brightness/contrast/saturation/hue),
    ``eval_resize`` (default True), ``seed``.

    Train: photometric jitter, random scale, rotation, pad (image: mean colour, labels: invalid)
    to at least ``size``, random crop to ``size``, horizontal flip. Eval: resize to ``size``
    when given (and ``eval_resize``), else nothing; then normalisation.
    """
    import albumentations as A
    import cv2

    cfg = cfg if isinstance(cfg, TransformsSection) else validate(TransformsSection, dict(cfg or {}), "transforms")
    hw = cfg.size if cfg.size is not None else ((size, size) if isinstance(size, int) else size)
    seed = cfg.seed
    if not train:
        geometric = []
        if hw is not None and cfg.eval_resize:
            geometric.append(
                A.Resize(hw[0], hw[1], interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST)
            )
        return JointTransform(geometric, [], seed=seed, normalization=normalization)

    photometric = _photometric(cfg)
    geometric = _train_geometric(cfg, hw)
    max_scale = cfg.scale[1] if cfg.scale is not None else 1.0
    return JointTransform(geometric, photometric, seed=seed, normalization=normalization, max_scale=max_scale)


def _photometric(cfg: TransformsSection) -> list:
    """The training pipeline's colour jitter (none when every strength is 0)."""
    import albumentations as A

    photometric = []
    cj = cfg.color_jitter
    if isinstance(cj, ColorJitter):
        b, c, s, h, p = cj.brightness, cj.contrast, cj.saturation, cj.hue, cj.p
    else:
        b = c = s = cj
        h, p = min(b / 4.0, 0.5), 0.8
    if max(b, c, s, h) > 0:
        photometric.append(
            A.ColorJitter(
                brightness=(max(0.0, 1 - b), 1 + b),
                contrast=(max(0.0, 1 - c), 1 + c),
                saturation=(max(0.0, 1 - s), 1 + s),
                hue=(-h, h),
                p=p,
            )
        )
    return photometric


def _train_geometric(cfg: TransformsSection, hw) -> list:
    """The training pipeline's random scale, rotation, pad and crop to ``hw``, horizontal flip."""
    import albumentations as A
    import cv2

    const = cv2.BORDER_CONSTANT
    geometric = []
    if cfg.scale is not None:
        lo, hi = cfg.scale
        geometric.append(
            A.RandomScale(
                scale_limit=(lo - 1.0, hi - 1.0),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                p=1.0,
            )
        )
    rot = cfg.rotate
    if rot > 0:
        geometric.append(
            A.Rotate(
                limit=(-rot, rot),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=const,
                fill=PAD_RGB,
                fill_mask=0,
                p=1.0,
            )
        )
    if hw is not None:
        geometric.append(
            A.PadIfNeeded(
                min_height=hw[0], min_width=hw[1], position="random", border_mode=const, fill=PAD_RGB, fill_mask=0
            )
        )
        geometric.append(A.RandomCrop(hw[0], hw[1]))
    hflip = cfg.hflip
    if hflip > 0:
        geometric.append(A.HorizontalFlip(p=hflip))
    return geometric
