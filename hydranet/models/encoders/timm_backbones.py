"""Any timm backbone by name (``encoder: timm:convnext_tiny``), through timm's ``features_only`` models.

timm is an optional dependency (``pip install hydranet[timm]``). The feature maps of stride
4 and more are returned (a stride-2 stem output is computed but not passed on), with the
channels and strides from timm's ``feature_info``. ``encoder_options`` go to
``timm.create_model`` (e.g. ``drop_path_rate``, ``out_indices``).

Any input size: ViT-style models (those taking timm's ``dynamic_img_size``) are built with
``dynamic_img_size=True`` and ``dynamic_img_pad=True`` unless ``encoder_options`` set them, so
their position embeddings are interpolated and the input is padded to the patch grid. A
model without these options keeps timm's own size rule (``encoder.dynamic_size`` says which).
Some timm models (e.g. ConvNeXt) do not export to ONNX with dynamic shapes: ``hydranet export
--static --size WxH`` writes them at one size.

Weights: ``imagenet`` -> timm's default pretrained tag (downloaded by timm, from the Hugging
Face hub); a local file -> ``pretrained_cfg_overlay=dict(file=PATH)``, timm's own offline route.
Many timm weights expect ImageNet mean/std, as Hydranet's preprocessing does; some (e.g.
``augreg`` ViTs) expect 0.5/0.5, which fine-tuning absorbs.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ...errors import ConfigError, WeightsUnavailableError
from .base import Encoder

PREFIX = "timm:"


def require_timm():
    try:
        import timm
    except ImportError as exc:
        raise ConfigError(
            "model.encoder: timm encoders need the timm package: pip install 'hydranet[timm]' (or pip install timm)"
        ) from exc
    return timm


def create_timm_model(name: str, weights=None, **kwargs) -> nn.Module:
    """``timm.create_model(name, ...)`` with Hydranet's weights convention and clear errors."""
    timm = require_timm()
    if not timm.is_model(name):
        pattern = f"*{name.split('.')[0].split('_')[0]}*"
        close = timm.list_models(pattern)[:8]
        raise ConfigError(
            f"model.encoder: timm has no model {name!r}" + (f"; similar: {', '.join(close)}" if close else "")
        )
    if weights is None:
        return timm.create_model(name, pretrained=False, **kwargs)
    if weights != "imagenet":
        if not os.path.isfile(str(weights)):
            raise WeightsUnavailableError(f"model.encoder_weights: the file {str(weights)!r} does not exist")
        kwargs["pretrained_cfg_overlay"] = {**kwargs.get("pretrained_cfg_overlay", {}), "file": str(weights)}
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except TypeError:
        raise
    except Exception as exc:  # hub/network errors (several libraries' types), bad files
        if weights != "imagenet":
            raise WeightsUnavailableError(f"timm could not load {str(weights)!r} into {name}: {exc}") from exc
        raise WeightsUnavailableError(
            f"timm could not fetch ImageNet weights for {name} ({type(exc).__name__}: {exc}). Offline? "
            f"Save the weights on a machine with network (timm.create_model({name!r}, pretrained=True)"
            f".state_dict(), or the hub's model file) and pass the file with --encoder-weights PATH "
            f"(config: model.encoder_weights: PATH; timm loads it via pretrained_cfg_overlay=dict(file=PATH)), "
            f"or fill the Hugging Face cache (HF_HOME)."
        ) from exc


DYNAMIC_SIZE = {"dynamic_img_size": True, "dynamic_img_pad": True}


class TimmEncoder(Encoder):
    """A timm ``features_only`` model; returns its features of stride 4 and more.

    ``dynamic_size``: True when the model was built for any input size (timm's
    ``dynamic_img_size``/``dynamic_img_pad``: ViT-style models).
    """

    def __init__(self, model: nn.Module, min_stride: int = 4, dynamic_size: bool = False):
        info = model.feature_info
        channels, strides = list(info.channels()), list(info.reduction())
        keep = [i for i, s in enumerate(strides) if s >= min_stride] or list(range(len(strides)))
        super().__init__([channels[i] for i in keep], [strides[i] for i in keep])
        self.model = model
        self.keep = keep
        self.dynamic_size = bool(dynamic_size)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.model(x)
        return [features[i] for i in self.keep]


def timm_encoder(name: str, weights=None, progress: bool = True, **options) -> Encoder:
    """``timm.create_model(name, features_only=True, **options)`` as an encoder.

    ViT-style models get ``dynamic_img_size=True, dynamic_img_pad=True`` (any input size) unless
    ``options`` name either; a model whose constructor does not take them is built without.
    """
    del progress  # timm reports downloads itself
    if any(key in options for key in DYNAMIC_SIZE):
        model = create_timm_model(name, weights, features_only=True, **options)
        return TimmEncoder(model, dynamic_size=bool(options.get("dynamic_img_size")))
    try:
        model = create_timm_model(name, weights, features_only=True, **DYNAMIC_SIZE, **options)
    except TypeError as exc:  # "__init__() got an unexpected keyword argument 'dynamic_img_size'"
        if "dynamic_img" not in str(exc):
            raise
        model = create_timm_model(name, weights, features_only=True, **options)
        return TimmEncoder(model, dynamic_size=False)
    return TimmEncoder(model, dynamic_size=True)
