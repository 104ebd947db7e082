"""Validation at the boundary: pydantic's errors as one line naming the path, value and expectation.

    validate(TrainSection, raw, "train")
    # ConfigError: train.lr: got 'fast' (text); expected a number

Only the first problem is reported (with a count of the others): the user fixes it and runs
again, as with a compiler.
"""

from __future__ import annotations

import difflib
import re
import typing
from typing import Any, Iterable, Sequence, TypeVar

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError

__all__ = ["validate", "format_path", "describe_value", "did_you_mean", "unknown_key_error"]

M = TypeVar("M", bound=BaseModel)

# pydantic error type -> what was expected (when its own message is less clear)
_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text",
    "model_type": "a mapping (a section of keys)",
    "model_attributes_type": "a mapping (a section of keys)",
    "dict_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "missing": "a value (this field is required)",
}


def format_path(where: str, loc: Iterable[Any]) -> str:
    """``("tasks", 1, "options", "max_depth")`` under ``where`` -> ``tasks[1].options.max_depth``."""
    path = where
    for part in loc:
        if isinstance(part, str) and part.startswith("<"):
            continue  # the tag of a form of an either() field
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "config"


def describe_value(value: Any, limit: int = 60) -> str:
    """A short ``repr`` with the type for the types users mix up (text, lists, mappings)."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    kind = {str: "text", list: "a list", dict: "a mapping", bool: "a boolean", type(None): "null"}.get(type(value))
    return f"{text} ({kind})" if kind and not isinstance(value, (bool, type(None))) else text


def did_you_mean(key: Any, known: Sequence[str]) -> str:
    """``"; did you mean 'lr'?"`` when ``key`` is close to one of ``known``, else ``""``."""
    lowered = {str(k).lower(): k for k in known}
    match = difflib.get_close_matches(str(key).lower(), list(lowered), n=1, cutoff=0.6)
    return f"; did you mean {lowered[match[0]]!r}?" if match else ""


def unknown_key_error(path: str, key: Any, known: Sequence[str], what: str = "field") -> ConfigError:
    """The error of an unknown key: its path, the nearest known key, and the valid ones."""
    return ConfigError(f"{path}: unknown {what} {str(key)!r}{did_you_mean(key, known)} (valid: {', '.join(known)})")


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The section classes an annotation can hold (through Optional, either(), lists...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found = []
    for arg in typing.get_args(annotation):
        found += _models_in(arg)
    return found


def _section_at(model: type[BaseModel], loc: Sequence[Any]) -> Any:
    """The section class at ``loc`` (the parent of an unknown key) inside ``model``, or None."""
    current = [model]
    for part in loc:
        if isinstance(part, int) or (isinstance(part, str) and part.startswith("<")):
            continue
        nxt = []
        for cls in current:
            field = cls.model_fields.get(part)
            if field is not None:
                nxt += _models_in(field.annotation)
        if not nxt:
            return None
        current = nxt
    return current[-1]


def _message(error: dict, where: str, model: type[BaseModel]) -> str:
    loc = tuple(error.get("loc") or ())
    kind = error.get("type", "")
    if kind == "extra_forbidden" and loc:
        section = _section_at(model, loc[:-1])
        known = [f.alias or name for name, f in section.model_fields.items()] if section else []
        if known:
            listing = f" (valid: {', '.join(known)})"
        else:  # a section without keys says so in its docstring ("This loss takes no options.")
            doc = ((section.__doc__ or "") if section else "").strip().splitlines()
            listing = f" ({doc[0].rstrip('.').lower()})" if doc else ""
        return f"{format_path(where, loc)}: unknown field{did_you_mean(loc[-1], known)}{listing}"
    path = format_path(where, loc)
    if kind == "value_error":  # a section's own check: "field: what is wrong"
        text = str(error.get("msg", "")).removeprefix("Value error, ")
        return f"{path}.{text}" if re.match(r"[A-Za-z_][\w.\[\]]*( and [\w.]+)?: ", text) else f"{path}: {text}"
    if kind == "missing":
        return f"{path}: missing (this field is required)"
    value = describe_value(error.get("input"))
    ctx = error.get("ctx") or {}
    if kind in _EXPECTED:
        expected = _EXPECTED[kind]
    elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sign = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        bound = next(iter(ctx.values()), "?")
        expected = f"a value {sign} {bound:g}" if isinstance(bound, float) else f"a value {sign} {bound}"
    elif kind == "literal_error":
        expected = f"one of {ctx.get('expected', '?')}"
    elif kind in ("too_short", "too_long"):
        expected = (
            error.get("msg", "").replace("List should have", "a list with").replace("Tuple should have", "a list with")
        )
    else:
        expected = str(error.get("msg", ""))
    expected = expected.removeprefix("expected ")
    return f"{path}: got {value}; expected {expected}"


def validate(model: type[M], value: Any, where: str = "") -> M:
    """``model.model_validate(value)``; a failure raises ConfigError naming the path under ``where``."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        errors = exc.errors()
        first = _message(errors[0], where, model)
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise ConfigError(first + more) from None
