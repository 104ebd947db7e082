"""Plug-in option schemas: each plug-in registers the model of its own options here. Families:
``task`` (a task kind's ``options``), ``loss`` (a loss's ``loss_options``), ``encoder``
(``model.encoder_options``), ``decoder`` (``model.decoder``, no options), ``dataset`` (a data
set type's keys), ``weighting`` (``loss.options``). A name ending in ``*`` stands for every
name with that prefix (``timm:*``: any timm backbone). A plug-in registers when its module is
imported; the built-in ones are imported on the first look-up of their family, so the parser
never needs a list of names.
"""

from __future__ import annotations

import importlib

__all__ = ["register_options", "registered", "lookup", "FAMILIES"]

# family -> the module whose import registers the built-in plug-ins of that family
FAMILIES = {
    "task": "hydranet.kinds",
    "loss": "hydranet.losses",
    "encoder": "hydranet.models.encoders",
    "decoder": "hydranet.models.refinenet",
    "dataset": "hydranet.data.factory",
    "weighting": "hydranet.losses",
}
_MODELS: dict[str, dict[str, type]] = {family: {} for family in FAMILIES}


def register_options(family: str, name: str, model: type) -> type:
    """Declare ``model`` (a :class:`~hydranet.schema.Section`) as the options of plug-in ``name``."""
    if family not in _MODELS:
        raise KeyError(f"unknown plug-in family {family!r}; valid: {', '.join(_MODELS)}")
    _MODELS[family][name] = model
    return model


def registered(family: str) -> dict[str, type]:
    """``{plug-in name: options model}`` of ``family``, the built-in plug-ins included."""
    importlib.import_module(FAMILIES[family])
    return _MODELS[family]


def lookup(family: str, name: str):
    """The options model of plug-in ``name`` of ``family`` (a ``prefix*`` entry matches any
    longer name with that prefix), or None when no plug-in has that name."""
    models = registered(family)
    if name in models:
        return models[name]
    for key, model in models.items():
        if key.endswith("*") and name.startswith(key[:-1]) and len(name) > len(key) - 1:
            return model
    return None
