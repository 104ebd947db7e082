"""Field types of the configuration schema and the base class of every section.

The rules every section shares, in one place:

* an integer is an integer: ``true``, ``3.5`` and ``"3"`` are refused;
* a number is finite: ``true`` is refused, NaN and infinity are refused, and numeric text
  (``"1e-3"``, which YAML 1.1 reads as a string) is accepted and becomes a float;
* a flag is ``true`` or ``false``; a name is text;
* a section refuses unknown keys (the error suggests the closest known one).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
)
from pydantic_core import PydanticCustomError

from ..limits import pixel_limit_problem

__all__ = [
    "Section",
    "OpenSection",
    "Int",
    "Float",
    "Bool",
    "Str",
    "Name",
    "PixelSize",
    "Field",
    "number",
    "pixel_pair",
    "either",
    "is_number",
    "is_list",
    "is_mapping",
    "Palette",
    "EmptySection",
]


class Section(BaseModel):
    """A config section: unknown keys are errors, values are checked on assignment too.

    Sections also answer ``section["key"]``, ``section.get("key", default)`` and
    ``section["key"] = value`` (checked), so code written against the former plain dicts keeps
    working while it reads typed values.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields and key not in (self.model_extra or {}):
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)  # checked like a config value (validate_assignment)

    def get(self, key: str, default: Any = None) -> Any:
        value = getattr(self, key, None) if key in type(self).model_fields else (self.model_extra or {}).get(key)
        return default if value is None else value

    def __contains__(self, key: str) -> bool:
        return key in self.model_fields_set or self.get(key) is not None

    def to_dict(self) -> dict:
        """The fields the config set (defaults left out), as plain JSON-like data."""
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True)


class OpenSection(Section):
    """A section that keeps keys it does not declare (plain data only): ``meta``, timm options."""

    model_config = ConfigDict(extra="allow", validate_assignment=True, populate_by_name=True)


def number(value: Any) -> Any:
    """Before-validator of numbers: refuses booleans, turns numeric text into a float."""
    if isinstance(value, bool):
        raise PydanticCustomError("finite_number", "expected a number, got a boolean")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise PydanticCustomError("finite_number", "expected a number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("finite_number", "expected a finite number")
    return value


Int = StrictInt
Bool = StrictBool
Str = StrictStr
Float = Annotated[float, BeforeValidator(number)]
Name = Annotated[StrictStr, Field(min_length=1)]


def pixel_pair(value: Any) -> tuple[int, int]:
    """``n`` (a square) or ``[height, width]`` -> ``(height, width)``, within :mod:`hydranet.limits`."""
    if isinstance(value, int) and not isinstance(value, bool):
        pair = [value, value]
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        pair = list(value)
    else:
        raise PydanticCustomError("pixel_size", "expected [height, width] (two integers) or one integer")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise PydanticCustomError("pixel_size", "expected [height, width] as two integers")
    if min(pair) < 1:
        raise PydanticCustomError("pixel_size", "height and width must be at least 1")
    problem = pixel_limit_problem(pair[0], pair[1])
    if problem:
        raise PydanticCustomError("pixel_size", problem)
    return (pair[0], pair[1])


PixelSize = Annotated[tuple[int, int], BeforeValidator(pixel_pair)]


def is_number(value: Any) -> bool:
    """A number, or text meant as one (the Float type decides whether it is one)."""
    return isinstance(value, (int, float, str)) and not isinstance(value, bool)


def is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def is_mapping(value: Any) -> bool:
    from collections.abc import Mapping

    return isinstance(value, (Mapping, BaseModel))


def either(expected: str, **members: tuple) -> Any:
    """A field taking one of several forms, chosen by a test of the value, e.g.
    ``either("a number or a mapping", number=(Float, is_number), mapping=(Jitter, is_mapping))``.

    Only the chosen form is validated, so an error names that form's problem; a value of no
    form is one error saying ``expected``. (The tags ``<name>`` are left out of error paths.)
    """
    tagged = tuple(Annotated[kind, Tag(f"<{name}>")] for name, (kind, _) in members.items())

    def pick(value: Any) -> Any:
        for name, (_, test) in members.items():
            if test(value):
                return f"<{name}>"
        return None

    return Annotated[
        Union[tagged],  # type: ignore[valid-type]
        Discriminator(pick, custom_error_type="either", custom_error_message=expected),
    ]


Channel = Annotated[Int, Field(ge=0, le=255)]
#: Colours of segmentation classes: a palette name or file (text), or rows of [R, G, B].
Palette = either(
    "a palette name or file (text), or rows of [R, G, B] from 0 to 255",
    text=(Str, lambda v: isinstance(v, str)),
    rows=(list[tuple[Channel, Channel, Channel]], is_list),
)


class EmptySection(Section):
    """A plug-in that takes no options of its own."""
