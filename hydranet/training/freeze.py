"""``train.freeze``: keep parts of a network fixed while the rest trains.

A frozen parameter has ``requires_grad = False`` (no gradient, so it is left out of the
optimiser's groups) and every BatchNorm layer inside a frozen module stays in eval mode,
with its running statistics fixed, whatever ``.train()`` is later called on the model.
Frozen parts therefore compute exactly what they computed before training.
"""

from __future__ import annotations

import types
from typing import Sequence

from torch import nn

from ..errors import ConfigError


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_paths(model: nn.Module, depth: int = 2) -> list[str]:
    """The module paths users name, up to ``depth`` levels (``encoder``, ``heads.segm``, ...)."""
    paths = []
    for name, _ in model.named_modules():
        if name and name.count(".") < depth:
            paths.append(name)
    return paths


def frozen_parameter_names(model: nn.Module, prefixes: Sequence[str], where: str = "train.freeze") -> list[str]:
    """The names of the parameters under ``prefixes`` (module paths, prefix match on dots).

    Raises:
        ConfigError: a path that matches no parameter (naming it and the valid paths).
    """
    names = [n for n, _ in model.named_parameters()]
    frozen = []
    for i, prefix in enumerate(prefixes):
        if not isinstance(prefix, str) or not prefix:
            raise ConfigError(f"{where}[{i}]: a module path such as 'encoder' or 'heads.segm', got {prefix!r}")
        hits = [n for n in names if _matches(n, prefix)]
        if not hits:
            raise ConfigError(
                f"{where}[{i}]: {prefix!r} matches no parameter of this model; module paths: "
                f"{', '.join(module_paths(model))}"
            )
        frozen += [n for n in hits if n not in frozen]
    return frozen


def _stay_in_eval(module: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(module, False)


def freeze(model: nn.Module, prefixes: Sequence[str], where: str = "train.freeze") -> list[str]:
    """Freeze the parameters under ``prefixes`` and pin the BatchNorm layers there to eval mode.

    Returns the frozen parameter names. Raises ConfigError as :func:`frozen_parameter_names`,
    or when nothing would be left to train.
    """
    if not prefixes:
        return []
    frozen = set(frozen_parameter_names(model, prefixes, where))
    params = dict(model.named_parameters())
    if len(frozen) == len(params):
        raise ConfigError(f"{where}: {list(prefixes)} freezes every parameter; nothing would train")
    for name in frozen:
        params[name].requires_grad_(False)
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and any(_matches(name, p) for p in prefixes):
            # an instance-level train(): the layer stays in eval mode after every model.train()
            module.train = types.MethodType(_stay_in_eval, module)
            module.eval()
    return sorted(frozen)


def is_frozen(module: nn.Module) -> bool:
    """True when every parameter of ``module`` is frozen (and it has at least one)."""
    params = list(module.parameters())
    return bool(params) and not any(p.requires_grad for p in params)
