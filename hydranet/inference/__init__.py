"""Inference and deployment: the predictor (the one pre/post-processing path), the fast
inference path, equivalent-layer rewrites, export and the benchmark.

    from hydranet.inference import Predictor
    pred = Predictor("model.pt").predict(rgb_uint8_frame)
"""

from .predictor import Prediction, Predictor, as_rgb_frame
from .weights import default_weights_path, resolve_weights

__all__ = ["Prediction", "Predictor", "as_rgb_frame", "default_weights_path", "resolve_weights"]
