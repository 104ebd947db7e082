"""The original Multi-Task RefineNet checkpoints (Nekrasov et al., ICRA 2019) in Hydranet.

The authors' files (``ExpNYUD_joint.ckpt``, ``ExpKITTI_joint.ckpt``,
``ExpNYUDKITTI_joint.ckpt``, ``ExpNYUD_three.ckpt``) are dicts with the weights under
``'state_dict'``, keyed like the authors' network::

    layer1..layer8.*                 MobileNetV2 (expand conv also in the t=1 block)
    conv3..conv8.weight              1x1 lateral convs of the decoder
    crp1..crp4.0.{1..4}_outvar_dimred.weight   chained residual pooling
    conv_adapt2..conv_adapt4.weight  1x1 convs before each upsampling
    pre_segm / segm, pre_depth / depth, pre_normal / normal   the heads

They map one to one onto ``HydraNet(mtrn_mobilenet_v2, LightRefineNet(width 256, 4 CRP
stages))``, whose decoder is ordered coarsest path first::

    encoder.layerN.*                 <- layerN.*
    decoder.lateral.i                <- conv{i+3}        (lateral i reads layer i+3)
    decoder.crp.k.convs.j            <- crp{4-k}.0.{j+1}_outvar_dimred
    decoder.adapt.k                  <- conv_adapt{4-k}
    heads.<task>.0 / heads.<task>.2  <- pre_<head> / <head>

The 46-class NYUD+KITTI network has one segmentation conv whose output channels 0..39
are the NYUD-40 classes and 40..45 the KITTI-6 classes. It becomes two segmentation
tasks, ``segm_nyud`` and ``segm_kitti``, each with its slice of that conv and its own copy
of the shared per-channel ``pre_segm`` conv, so their outputs are the channels of the
original output.

Files are read with ``torch.load(weights_only=True)``: pickled code is refused. Only
NumPy's plain-data reconstructors (arrays, scalars, dtypes, which old training scripts
stored for e.g. the best validation score) are allowed besides tensors.
"""

from __future__ import annotations

import ast
import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch

from ..checkpoint import FORMAT, check_plausible_weights, safe_load, save_model
from ..data.io import refuse_overwrite
from ..data.transforms import IMAGENET
from ..errors import CheckpointError
from ..labelsets import KITTI6_PALETTE, NYUD40_NAMES, NYUD40_PALETTE
from ..models import build_model
from .authors import BY_LAYOUT, DATASETS_BY_CLASSES

PathLike = Union[str, Path]

#: Head names of the original network, in its output order.
ORIGINAL_HEADS = ("segm", "depth", "normal")
#: Task kind and Hydranet task name of each original head (segm may be split, see below).
HEAD_TASKS = {"segm": ("segmentation", "segm"), "depth": ("depth", "depth"), "normal": ("normals", "normals")}

#: Input normalisation of every original network: RGB / 255, then ImageNet mean and std.
NORMALIZATION = {"color": "RGB", "scale": 1.0 / 255.0, **IMAGENET.to_dict()}

#: What each dataset brings: segmentation classes, depth PNG units per metre, evaluation cap.
DATASETS = {
    "nyud": {"classes": 40, "depth_png_scale": 5000.0, "max_depth": 10.0},
    "kitti": {"classes": 6, "depth_png_scale": 256.0, "max_depth": 80.0},
}

#: The authors' published checkpoints, by layout name (their entries in :data:`.authors.AUTHORS_MODELS`).
KNOWN_CHECKPOINTS = BY_LAYOUT

#: Model section of every converted config.
MODEL_SECTION = {
    "encoder": "mtrn_mobilenet_v2",
    "decoder": "lightweight",
    "width": 256,
    "crp_stages": 4,
    "encoder_weights": None,
}

_PACKAGE = Path(__file__).resolve().parent
#: Keys, shapes and dtypes of the authors' three-task (40 classes + depth + normals) network.
THREE_TASK_KEYS_FILE = _PACKAGE / "mtrn_three_task_keys.tsv"
#: NYUD-40 class names (Gupta et al. 2013), shipped with the NYUD data tools.
#: The KITTI-6 class names are not published with the checkpoints; these are placeholders.
KITTI_CLASS_NAMES = tuple(f"kitti_class_{i}" for i in range(6))


def authors_palette(dataset: str) -> list:
    """The authors' segmentation colours for ``nyud`` or ``kitti`` as rows of [R, G, B], row i = class i.

    Their ``cmap_nyud.npy`` is the PASCAL VOC colour map drawn as ``cmap[argmax + 1]``;
    their ``cmap_kitti.npy`` is drawn as ``cmap[argmax]``.
    """
    return {"nyud": NYUD40_PALETTE, "kitti": KITTI6_PALETTE}[dataset].tolist()


def nyud_class_names() -> tuple:
    """The 40 NYUD-40 class names, in label order (id 0 = ``wall``)."""
    return tuple(NYUD40_NAMES)


# --- layout -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """What an original state dict holds, and the Hydranet tasks it becomes.

    Attributes:
        name: ``nyud_joint | kitti_joint | nyudkitti_joint | nyud_three`` for the authors'
            published layouts, ``custom`` otherwise.
        heads: the original heads present, in the original output order.
        segm_classes: output channels of the original ``segm`` conv (None without it).
        datasets: the datasets the classes come from (``nyud``, ``kitti``), if known.
        tasks: the Hydranet task mappings, in output order.
        segm_split: ``(task name, first channel, end channel)`` of each segmentation task
            in the original ``segm`` output.
    """

    name: str
    heads: tuple
    segm_classes: Optional[int]
    datasets: tuple
    tasks: tuple = field(default_factory=tuple)
    segm_split: tuple = field(default_factory=tuple)

    @property
    def known_as(self) -> Optional[str]:
        """The authors' file name for this layout (None for a custom one)."""
        known = KNOWN_CHECKPOINTS.get(self.name)
        return known["file"] if known else None

    def head_tasks(self, head: str) -> list:
        """Hydranet task names fed by the original head ``head``."""
        if head == "segm":
            return [name for name, _, _ in self.segm_split]
        return [HEAD_TASKS[head][1]] if head in self.heads else []

    def describe(self) -> str:
        parts = []
        for head in self.heads:
            if head == "segm":
                parts += [f"{name} ({stop - start} classes)" for name, start, stop in self.segm_split]
            else:
                parts.append(HEAD_TASKS[head][1])
        known = f" = {self.known_as}" if self.known_as else ""
        return f"{self.name}{known}: " + ", ".join(parts)

    def config(self) -> dict:
        """The Hydranet config (model section + tasks) of this layout, without meta."""
        return {"model": dict(MODEL_SECTION), "tasks": [copy.deepcopy(t) for t in self.tasks]}

    def meta(self) -> dict:
        """Plain-data facts a user of the converted model needs (input normalisation, depth units...)."""
        meta = {
            "source": "Multi-Task RefineNet (Nekrasov et al., ICRA 2019)",
            "layout": self.name,
            "description": self.describe(),
            "known_as": self.known_as,
            "datasets": list(self.datasets),
            "normalization": copy.deepcopy(NORMALIZATION),
            "output_stride": 4,
            "class_names": {t["name"]: list(t["class_names"]) for t in self.tasks if t.get("class_names")},
        }
        if "depth" in self.heads:
            per_dataset = {
                d: {"png_scale": DATASETS[d]["depth_png_scale"], "max_depth": DATASETS[d]["max_depth"]}
                for d in self.datasets
            }
            single = per_dataset[self.datasets[0]] if len(self.datasets) == 1 else {}
            meta["depth"] = {
                "task": "depth",
                "units": "metres",
                "take_abs": True,  # the authors take |output| as the depth
                "png_scale": single.get("png_scale"),
                "max_depth": max((v["max_depth"] for v in per_dataset.values()), default=None),
                "per_dataset": per_dataset,
            }
        return meta


def strip_module_prefix(state_dict: Mapping[str, Any]) -> dict:
    """Drop the ``module.`` prefix that ``nn.DataParallel`` puts in front of every key."""
    keys = list(state_dict)
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def detect_layout(state_dict: Mapping[str, Any]) -> Layout:
    """Read the heads and the number of classes of an original state dict from its keys.

    Raises:
        CheckpointError: no original head is present, or the segmentation conv is missing.
    """
    sd = strip_module_prefix(state_dict)
    heads = tuple(h for h in ORIGINAL_HEADS if f"{h}.weight" in sd or f"pre_{h}.weight" in sd)
    if not heads:
        sample = ", ".join(list(sd)[:5])
        raise CheckpointError(
            "not a Multi-Task RefineNet state dict: none of the heads "
            f"{', '.join(h + '.weight' for h in ORIGINAL_HEADS)} is present (keys begin: {sample or 'none'})"
        )
    segm_classes = None
    if "segm" in heads:
        w = sd.get("segm.weight")
        if not isinstance(w, torch.Tensor) or w.dim() != 4:
            raise CheckpointError(
                "the state dict has pre_segm.weight but no 4-d segm.weight: cannot tell the number of classes"
            )
        segm_classes = int(w.shape[0])
    datasets = DATASETS_BY_CLASSES.get(segm_classes, ())

    name = "custom"
    for known_name, known in KNOWN_CHECKPOINTS.items():
        if known["heads"] == heads and known["segm_classes"] == segm_classes:
            name = known_name

    tasks, split = [], []
    for head in heads:
        kind, task_name = HEAD_TASKS[head]
        if head == "segm":
            if segm_classes == 46:
                pieces = [
                    ("segm_nyud", 0, 40, nyud_class_names(), "nyud"),
                    ("segm_kitti", 40, 46, KITTI_CLASS_NAMES, "kitti"),
                ]
            else:
                names = {40: nyud_class_names, 6: lambda: KITTI_CLASS_NAMES}.get(segm_classes, lambda: None)()
                pieces = [("segm", 0, segm_classes, names, datasets[0] if len(datasets) == 1 else None)]
            for piece_name, start, stop, names, dataset in pieces:
                task = {"name": piece_name, "kind": kind, "classes": stop - start}
                if names is not None:
                    task["class_names"] = list(names)
                if dataset is not None:  # the authors' cmap_nyud / cmap_kitti, so figures match theirs
                    task["options"] = {"palette": authors_palette(dataset)}
                tasks.append(task)
                split.append((piece_name, start, stop))
        elif head == "depth":
            task = {"name": task_name, "kind": kind, "options": {"take_abs": True}}
            if datasets:
                task["options"]["max_depth"] = max(DATASETS[d]["max_depth"] for d in datasets)
                if len(datasets) == 1:
                    task["options"]["depth_scale"] = DATASETS[datasets[0]]["depth_png_scale"]
            tasks.append(task)
        else:
            tasks.append({"name": task_name, "kind": kind})
    return Layout(
        name=name,
        heads=heads,
        segm_classes=segm_classes,
        datasets=datasets,
        tasks=tuple(tasks),
        segm_split=tuple(split),
    )


# --- key mapping -----------------------------------------------------------------------------

_RULES = (
    (re.compile(r"layer([1-8])\.(.+)"), lambda m: f"encoder.layer{m[1]}.{m[2]}"),
    (re.compile(r"conv([3-8])\.weight"), lambda m: f"decoder.lateral.{int(m[1]) - 3}.weight"),
    (
        re.compile(r"crp([1-4])\.0\.([1-4])_outvar_dimred\.weight"),
        lambda m: f"decoder.crp.{4 - int(m[1])}.convs.{int(m[2]) - 1}.weight",
    ),
    (re.compile(r"conv_adapt([2-4])\.weight"), lambda m: f"decoder.adapt.{4 - int(m[1])}.weight"),
)
_HEAD_PRE = re.compile(r"pre_(segm|depth|normal)\.weight")
_HEAD_OUT = re.compile(r"(segm|depth|normal)\.(weight|bias)")


def map_key(key: str, layout: Layout) -> list:
    """Where the original tensor ``key`` goes: a list of ``(hydranet key, channel slice or None)``.

    Empty when the key has no place in the model of ``layout``.
    """
    for pattern, target in _RULES:
        m = pattern.fullmatch(key)
        if m:
            return [(target(m), None)]
    m = _HEAD_PRE.fullmatch(key)
    if m:
        return [(f"heads.{task}.0.weight", None) for task in layout.head_tasks(m[1])]
    m = _HEAD_OUT.fullmatch(key)
    if m:
        head, param = m[1], m[2]
        if head == "segm":
            return [(f"heads.{task}.2.{param}", (start, stop)) for task, start, stop in layout.segm_split]
        return [(f"heads.{task}.2.{param}", None) for task in layout.head_tasks(head)]
    return []


def _listing(items: list, limit: int = 40) -> str:
    shown = "\n  ".join(items[:limit])
    more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"\n  {shown}{more}"


def convert_state_dict(state_dict: Mapping[str, Any]) -> tuple:
    """Convert an original Multi-Task RefineNet state dict to Hydranet.

    Every tensor is placed (weights, BatchNorm running statistics and
    ``num_batches_tracked`` included) and every tensor of the model is filled.

    Returns:
        ``(config, state_dict, meta)``: the Hydranet config (``config["meta"]`` is a copy of
        ``meta``), a state dict that ``build_model(config).load_state_dict`` takes with
        ``strict=True``, and the plain-data facts of :meth:`Layout.meta`.

    Raises:
        CheckpointError: listing the original keys it could not place (no rule, no such
            tensor in the model, wrong shape) and the model keys left unfilled.
    """

    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"expected a state dict (a mapping of names to tensors), got {type(state_dict).__name__}")
    sd = strip_module_prefix(state_dict)
    not_tensors = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError("the state dict holds entries that are not tensors:" + _listing(not_tensors))
    layout = detect_layout(sd)
    meta = layout.meta()
    config = layout.config()
    config["meta"] = copy.deepcopy(meta)
    expected = {k: tuple(v.shape) for k, v in build_model(config, progress=False).state_dict().items()}

    converted, unplaced = {}, []
    for key, tensor in sd.items():
        targets = map_key(key, layout)
        if not targets:
            unplaced.append(f"{key} {tuple(tensor.shape)}: no place for it in a {layout.name} model")
        for dst, channels in targets:
            value = tensor if channels is None else tensor[channels[0] : channels[1]]
            if dst not in expected:
                unplaced.append(f"{key} -> {dst}: the model has no such tensor")
            elif tuple(value.shape) != expected[dst]:
                unplaced.append(f"{key} {tuple(value.shape)} -> {dst}: the model expects {expected[dst]}")
            elif dst in converted:
                unplaced.append(f"{key} -> {dst}: already filled by another key")
            else:
                # clone: a slice must not drag the whole tensor's storage into the saved file
                converted[dst] = value.detach().clone()
    missing = [f"{k} {shape}" for k, shape in expected.items() if k not in converted]
    if unplaced or missing:
        msg = f"cannot convert this state dict to the {layout.describe()} model."
        if unplaced:
            msg += f"\n{len(unplaced)} original key(s) could not be placed:" + _listing(unplaced)
        if missing:
            msg += f"\n{len(missing)} model key(s) were left unfilled:" + _listing(missing)
        raise CheckpointError(msg)
    return config, converted, meta


# --- files ---------------------------------------------------------------------------------------


def _numpy_data_globals() -> list:
    """NumPy's plain-data reconstructors (arrays, scalars, dtypes), also under NumPy 1 names."""
    try:
        import numpy as np
        from numpy._core import multiarray
    except ImportError:  # NumPy 1
        try:
            import numpy as np
            from numpy.core import multiarray
        except ImportError:
            return []
    dtype_classes = [
        getattr(np.dtypes, n)
        for n in getattr(getattr(np, "dtypes", None), "__all__", [])
        if isinstance(getattr(np.dtypes, n), type) and issubclass(getattr(np.dtypes, n), np.dtype)
    ]
    return [
        np.ndarray,
        np.dtype,
        *dtype_classes,
        (multiarray.scalar, "numpy.core.multiarray.scalar"),
        (multiarray.scalar, "numpy._core.multiarray.scalar"),
        (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
        (multiarray._reconstruct, "numpy._core.multiarray._reconstruct"),
    ]


def read_original(path: PathLike) -> tuple:
    """Read an original checkpoint without executing pickled code.

    Returns:
        ``(state_dict, extras)``: the weights (``module.`` prefix removed) and the file's
        other top-level entries that are plain ints, floats or strings (e.g. ``epoch``).

    Raises:
        CheckpointError: unreadable file, pickled code (refused), or no state dict inside.
    """

    with torch.serialization.safe_globals(_numpy_data_globals()):
        obj = safe_load(path)
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        raise CheckpointError(f"{path}: already a Hydranet checkpoint; load it with hydranet.load_model")
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        sd, extras = obj["state_dict"], {k: v for k, v in obj.items() if k != "state_dict"}
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd, extras = obj, {}  # a bare state dict
    else:
        keys = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"{path}: no 'state_dict' entry (found: {keys}); not an original Multi-Task RefineNet checkpoint"
        )
    plain = {}
    for k, v in extras.items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        elif type(v).__module__ == "numpy" and getattr(v, "size", 0) == 1:
            v = v.item()  # NumPy scalars and one-element arrays
        if isinstance(v, (bool, int, float, str)):
            plain[str(k)] = v
    return strip_module_prefix(sd), plain


def convert_file(path: PathLike) -> tuple:
    """:func:`read_original` then :func:`convert_state_dict`; ``meta["source_file"]`` records the file.

    Returns:
        ``(config, state_dict, meta)`` as :func:`convert_state_dict`.
    """

    sd, extras = read_original(path)
    try:
        config, state, meta = convert_state_dict(sd)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    check_plausible_weights(path, state)  # the authors' files carry no hash: a flipped bit shows here
    source = {"file": Path(path).name, "tensors": len(sd)}
    source.update({k: v for k, v in extras.items() if k in ("epoch", "best_val")})
    meta["source_file"] = source
    config["meta"]["source_file"] = copy.deepcopy(source)
    return config, state, meta


def load_original(path: PathLike, device: Union[str, torch.device] = "cpu"):
    """Build the Hydranet model of an original Multi-Task RefineNet checkpoint (eval mode).

    The model's ``config["meta"]`` carries the class names, input normalisation and depth
    conventions (see :meth:`Layout.meta`).
    """

    config, state, _ = convert_file(path)
    model = build_model(config, progress=False)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def convert(src: PathLike, dst: PathLike) -> dict:
    """Write the original checkpoint ``src`` as a Hydranet checkpoint ``dst``.

    ``hydranet.load_model(dst)`` then rebuilds the model with no other input; the file
    holds ``meta`` (see :meth:`Layout.meta`) at its top level and in its config.

    Returns:
        A report: ``layout`` (its name), ``description``, ``tensors_in`` (original tensors read),
        ``tensors_out`` (model tensors written), ``tasks`` (names) and ``meta``.
    """

    refuse_overwrite(dst, src)
    config, state, meta = convert_file(src)
    model = build_model(config, progress=False)
    model.load_state_dict(state, strict=True)
    save_model(model.eval(), dst, meta=meta)
    return {
        "layout": meta["layout"],
        "description": meta["description"],
        "tensors_in": meta["source_file"]["tensors"],
        "tensors_out": len(state),
        "tasks": [t["name"] for t in config["tasks"]],
        "meta": meta,
    }


# --- the reference key table and synthetic originals (tests, demos) -------------------------


def original_key_shapes(segm_classes: int = 40, normals: bool = True) -> dict:
    """Keys and shapes of an original state dict, from the authors' three-task key table.

    ``segm_classes`` sets the segmentation conv's outputs; ``normals=False`` drops the
    normals head (the two-task "joint" networks).
    """
    table = {}
    for line in THREE_TASK_KEYS_FILE.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape, dtype = line.split("\t")
        table[key] = (tuple(ast.literal_eval(shape)), dtype.strip())
    out = {}
    for key, (shape, dtype) in table.items():
        if not normals and key in ("pre_normal.weight", "normal.weight", "normal.bias"):
            continue
        if key in ("segm.weight", "segm.bias"):
            shape = (segm_classes,) + shape[1:]
        out[key] = (shape, dtype)
    return out


def synthetic_original_state_dict(
    segm_classes: int = 40, normals: bool = False, seed: int = 0, scale: float = 0.1
) -> dict:
    """A state dict in the original layout with random values (for tests and offline demos).

    BatchNorm running variances are positive and ``num_batches_tracked`` are int64 counts.
    """
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, (shape, dtype) in original_key_shapes(segm_classes, normals).items():
        if dtype == "int64":
            sd[key] = torch.randint(0, 10_000, shape, generator=g, dtype=torch.int64)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith(".bias") or key.endswith("running_mean"):
            sd[key] = torch.randn(shape, generator=g) * scale
        else:
            sd[key] = torch.randn(shape, generator=g) * (scale if len(shape) > 1 else 1.0)
    return sd
