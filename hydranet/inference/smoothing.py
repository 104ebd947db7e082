"""Temporal smoothing for video: an exponential moving average of the network's outputs
across consecutive frames, applied before the Predictor's one post-processing step.

    s_t = alpha * s_{t-1} + (1 - alpha) * x_t        (alpha = 0: off; the first frame: s_1 = x_1)

What is averaged is each task kind's choice (``to_average`` / ``from_average``): class
probabilities for segmentation and classification (handed on as log-probabilities, so the
post-processing's argmax and softmax give the averaged probabilities back exactly), the depth
magnitude, the raw values of other kinds (normals are normalised afterwards). Averaging happens
at the network's resolution; the post-processing's bilinear resize is linear, so it commutes
with the average.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from ..errors import ConfigError

__all__ = ["TemporalSmoother"]


class TemporalSmoother:
    """Keeps one running average per task; frames are taken in order (a batch's too).

    Args:
        tasks: the model's task specs.
        alpha: weight of the past, ``0 <= alpha < 1``.

    The state restarts when the output size changes (a new video) or after :meth:`reset`.
    """

    def __init__(self, tasks: Sequence, alpha: float):
        alpha = float(alpha)
        if not 0.0 <= alpha < 1.0:
            raise ConfigError(f"smoothing alpha must be in [0, 1) (0 = off), got {alpha}")
        self.alpha = alpha
        self.tasks = {t.name: t for t in tasks}
        self.state: dict = {}

    def reset(self) -> None:
        """Forget the past frames."""
        self.state = {}

    @torch.inference_mode()
    def __call__(self, outputs: Mapping[str, torch.Tensor]) -> dict:
        """``{task: N x ... tensor}`` (frames in time order) -> the same with smoothed values."""
        out = {}
        for name, y in outputs.items():
            spec = self.tasks.get(name)
            if spec is None:
                out[name] = y
                continue
            values = spec.task_kind.to_average(spec, y.float())
            prev = self.state.get(name)
            frames = []
            for i in range(values.shape[0]):
                cur = values[i]
                if prev is not None and prev.shape == cur.shape:
                    cur = self.alpha * prev + (1.0 - self.alpha) * cur
                frames.append(cur)
                prev = cur
            self.state[name] = prev
            out[name] = spec.task_kind.from_average(spec, torch.stack(frames))
        return out
