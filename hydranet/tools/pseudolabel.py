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

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..checkpoint import load_model
from ..data.io import encode_normals_png, read_image, write_png
from ..data.listfile import parse_list_file
from ..data.transforms import normalize_image
from ..errors import DataError

PathLike = Union[str, Path]
FILLABLE = ("segmentation", "depth", "normals")


@torch.inference_mode()
def pseudolabel(teacher: PathLike, list_file: PathLike, out_dir: PathLike, root: Optional[PathLike] = None,
                depth_scale: float = 5000.0, confidence: Optional[float] = None, device="cpu",
                progress: bool = True) -> dict:
    """Fill the missing dense labels of ``list_file`` with ``teacher``'s predictions.

    Writes the label PNGs under ``out_dir/<kind>/`` and a completed list file
    ``out_dir/<list name>`` (header ``# image segmentation depth normals``, absolute paths).

    Returns:
        ``{"list": path, "filled": {kind: count}, "kept": {kind: count}, "samples": n}``.
    """
    list_file, out_dir = Path(list_file), Path(out_dir)
    model = load_model(teacher, device=device)
    by_kind = {t.kind: t for t in model.tasks if t.kind in FILLABLE}
    if not by_kind:
        raise DataError(f"{teacher}: the teacher has no dense task to fill labels with")
    _, rows = parse_list_file(list_file)
    base = Path(root) if root else list_file.parent
    out_list = out_dir / list_file.name
    if out_list.resolve() == list_file.resolve():
        raise DataError(f"{out_list}: the completed list would overwrite the source list; choose another --out")
    filled = {k: 0 for k in by_kind}
    kept = {k: 0 for k in FILLABLE}
    lines = ["# " + " ".join(("image",) + FILLABLE)]
    for lineno, entry in tqdm(rows, desc="pseudolabel", disable=not progress):
        image_path = (base / entry["image"]).resolve()
        columns = {"image": str(image_path)}
        for kind in FILLABLE:
            if kind in entry:
                columns[kind] = str((base / entry[kind]).resolve())
                kept[kind] += 1
        missing = [k for k in by_kind if k not in columns]
        if missing:
            rgb = read_image(image_path)
            outputs = model(normalize_image(rgb)[None].to(device))
            stem = f"{lineno:06d}_{image_path.stem}"
            for kind in missing:
                path = out_dir / kind / f"{stem}.png"
                if path.resolve() in {Path(p) for p in columns.values()}:
                    raise DataError(f"{path}: would overwrite a listed file")
                write_png(path, _encode(kind, outputs[by_kind[kind].name][0], by_kind[kind], depth_scale,
                                         confidence))
                columns[kind] = str(path.resolve())
                filled[kind] += 1
        lines.append(" ".join(columns.get(k, "-") for k in ("image",) + FILLABLE))
    out_dir.mkdir(parents=True, exist_ok=True)
    out_list.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"list": str(out_list), "filled": filled, "kept": kept, "samples": len(rows)}


def _encode(kind: str, pred: torch.Tensor, spec, depth_scale: float, confidence: Optional[float]) -> np.ndarray:
    """A prediction (C x H x W) as the PNG array of its label kind."""
    if kind == "segmentation":
        probs = pred.float().softmax(0)
        conf, ids = probs.max(0)
        ids = ids.to(torch.int64)
        if confidence is not None:
            ids[conf < confidence] = spec.ignore_index
        return ids.cpu().numpy().astype(np.uint8 if spec.classes < 256 and spec.ignore_index < 256 else np.uint16)
    if kind == "depth":
        metres = pred[0].float().abs().cpu().numpy()
        return np.clip(np.round(metres * depth_scale), 0, 65535).astype(np.uint16)
    normals = F.normalize(pred.float(), dim=0).permute(1, 2, 0).cpu().numpy()
    return encode_normals_png(normals)
