"""Pseudo-labels from a teacher (hard knowledge distillation for asymmetric annotations).

As in Multi-Task RefineNet (Nekrasov et al., ICRA 2019): a teacher trained on the
labelled part fills the *missing* dense labels of a list-file dataset with its
predictions, and the student trains on the completed list. A real label is never
replaced, and no file of the source dataset is written.

* segmentation: the teacher's arg-max class; with ``confidence``, pixels whose softmax
  probability is below it become ``ignore_index`` (no label) instead;
* depth: the teacher's depth in metres, stored as uint16 ``metres * depth_scale``;
* normals: the teacher's unit normals, stored as ``(n + 1) / 2 * 255``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch
from tqdm.auto import tqdm

from ..data.io import NYUD_DEPTH_SCALE, protect_inputs, read_image, writable_dir, write_bytes_atomic, write_png
from ..data.listfile import DEFAULT_COLUMNS, check_columns, parse_list_file
from ..data.transforms import Normalization
from ..errors import DataError
from ..inference.onnx_model import is_onnx_file, load_onnx_model
from ..inference.processing import preprocess
from ..schema import Field, Float, Section, validate
from ..tasks import KINDS
from ..weights.hub import load_model

PathLike = Union[str, Path]


def _load_teacher(teacher: PathLike, device):
    """A checkpoint, or an ONNX file written by ``hydranet export`` (run by onnxruntime)."""

    if is_onnx_file(teacher):
        return load_onnx_model(teacher, device=str(device))
    return load_model(teacher, device=device)


class PseudolabelSettings(Section):
    """The numeric settings of :func:`pseudolabel` (``--depth-scale``, ``--confidence``)."""

    depth_scale: Float = Field(gt=0, le=1e6, alias="--depth-scale", description="depth PNG units per metre")
    confidence: Optional[Float] = Field(
        None, ge=0, le=1, alias="--confidence", description="keep teacher labels at least this confident"
    )


@torch.inference_mode()
def pseudolabel(
    teacher: PathLike,
    list_file: PathLike,
    out_dir: PathLike,
    root: Optional[PathLike] = None,
    depth_scale: float = NYUD_DEPTH_SCALE,
    confidence: Optional[float] = None,
    device="cpu",
    progress: bool = True,
) -> dict:
    """Fill the missing dense labels of ``list_file`` with ``teacher``'s predictions.

    ``teacher``: a checkpoint, or an ONNX file written by ``hydranet export`` (fp32 or int8).

    Every dense task kind that can be filled (its ``fillable``: segmentation, depth, normals)
    is a column of the list file, named after the kind. Writes the label PNGs under
    ``out_dir/<kind>/`` and a completed list file ``out_dir/<list name>`` (header
    ``# image segmentation depth normals``, absolute paths).

    Returns:
        ``{"list": path, "filled": {kind: count}, "kept": {kind: count}, "samples": n}``.
    """
    list_file, out_dir = Path(list_file), Path(out_dir)
    settings = validate(PseudolabelSettings, {"--depth-scale": depth_scale, "--confidence": confidence})
    header, rows = parse_list_file(list_file)
    writable_dir(out_dir)
    model = _load_teacher(teacher, device)
    columns_order = tuple(name for name, kind in KINDS.items() if kind.fillable)
    by_kind = {t.kind: t for t in model.tasks if t.task_kind.fillable}
    if not by_kind:
        raise DataError(f"{teacher}: the teacher has no dense task to fill labels with")
    check_columns(list_file, header, [*DEFAULT_COLUMNS, *(t.name for t in model.tasks)])
    base = Path(root) if root else list_file.parent
    protect_inputs(base / text for _, entry in rows for text in entry.values())  # no listed file is replaced
    out_list = out_dir / list_file.name
    if out_list.resolve() == list_file.resolve():
        raise DataError(f"{out_list}: the completed list would overwrite the source list; choose another --out")
    normalization = Normalization.from_config(model.config)
    filled = {k: 0 for k in columns_order if k in by_kind}
    kept = {k: 0 for k in columns_order}
    lines = ["# " + " ".join(("image",) + columns_order)]
    for lineno, entry in tqdm(rows, desc="pseudolabel", disable=not progress):
        image_path = (base / entry["image"]).resolve()
        columns = {"image": str(image_path)}
        for kind in columns_order:
            if kind in entry:
                columns[kind] = str((base / entry[kind]).resolve())
                kept[kind] += 1
        missing = [k for k in filled if k not in columns]
        if missing:
            x, _ = preprocess([read_image(image_path)], torch.device(device), normalization=normalization)
            outputs = model(x)
            stem = f"{lineno:06d}_{image_path.stem}"
            for kind in missing:
                path = out_dir / kind / f"{stem}.png"
                if path.resolve() in {Path(p) for p in columns.values()}:
                    raise DataError(f"{path}: would overwrite a listed file")
                spec = by_kind[kind]
                write_png(path, spec.task_kind.pseudolabel(spec, outputs[spec.name][0], settings))
                columns[kind] = str(path.resolve())
                filled[kind] += 1
        lines.append(" ".join(columns.get(k, "-") for k in ("image",) + columns_order))
    write_bytes_atomic(out_list, ("\n".join(lines) + "\n").encode("utf-8"))
    return {"list": str(out_list), "filled": filled, "kept": kept, "samples": len(rows)}
