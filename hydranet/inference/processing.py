"""The one pre- and post-processing path: uint8 frames in, per-frame results out.

:class:`~hydranet.inference.Predictor`, the benchmark's end-to-end rows, ``pseudolabel``,
the video demo and the web demo all call these two functions, so what is timed is what
users run.

* :func:`preprocess`: frames (uint8 RGB, one size) -> the network input: uploaded as uint8
  (4x less to copy), resized to the network size (bilinear, ``align_corners=False``),
  normalised with the checkpoint's mean and std, zero-padded (the mean colour) to a
  multiple of ``pad_to``.
* :func:`postprocess`: the network's ``{task: tensor}`` -> one ``{task: result}`` dict per
  frame, dense outputs cropped back, resized to the frame (bilinear on logits and values,
  before any arg-max) and turned into results by each task's kind.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.transforms import IMAGENET, Normalization

__all__ = ["preprocess", "postprocess"]


def preprocess(
    frames: Sequence[np.ndarray],
    device: torch.device,
    size: Optional[Sequence[int]] = None,
    normalization: Normalization = IMAGENET,
    pad_to: Optional[int] = None,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> tuple[torch.Tensor, tuple]:
    """uint8 RGB frames of one size -> ``(N x 3 x h x w tensor on device, (h, w) before padding)``.

    ``frames``: a list of ``H x W x 3`` arrays or one ``N x H x W x 3`` array.
    """
    batch = np.ascontiguousarray(np.stack(list(frames)) if not isinstance(frames, np.ndarray) else frames)
    if batch.ndim == 3:
        batch = batch[None]
    x = torch.from_numpy(batch).to(device, non_blocking=True).permute(0, 3, 1, 2)  # NHWC buffer, NCHW view
    if not channels_last:
        x = x.contiguous()
    x = x.to(dtype)
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(int(v) for v in size), mode="bilinear", align_corners=False)
    mean = torch.tensor(normalization.mean, device=x.device, dtype=dtype).view(1, 3, 1, 1) * 255.0
    inv_std = 1.0 / (torch.tensor(normalization.std, device=x.device, dtype=dtype).view(1, 3, 1, 1) * 255.0)
    x = x.sub_(mean).mul_(inv_std)
    net_size = tuple(x.shape[-2:])
    if pad_to:
        ph, pw = (-net_size[0]) % pad_to, (-net_size[1]) % pad_to
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), value=0.0)  # zero = the mean colour after normalisation
    return x, net_size


def postprocess(
    outputs: Mapping[str, torch.Tensor], tasks: Sequence, net_size: Sequence[int], frame_size: Sequence[int]
) -> list[dict]:
    """Network outputs -> one ``{task: result}`` dict per frame (NumPy / plain data, host memory).

    Results per kind (see each kind's ``postprocess``): segmentation ``H x W`` class ids,
    depth ``H x W`` metres, normals ``H x W x 3`` unit vectors, classification
    ``{"class_id", "name", "probability"}``, regression float32 values in the target's units.
    """
    n = next(iter(outputs.values())).shape[0]
    results: list[dict] = [dict() for _ in range(n)]
    with torch.inference_mode():
        for task in tasks:
            y = outputs[task.name].float()
            if task.dense:
                y = y[..., : net_size[0], : net_size[1]]
                if tuple(y.shape[-2:]) != tuple(frame_size):
                    y = F.interpolate(y, size=tuple(frame_size), mode="bilinear", align_corners=False)
            for result, value in zip(results, task.task_kind.postprocess(task, y)):
                result[task.name] = value
    return results
