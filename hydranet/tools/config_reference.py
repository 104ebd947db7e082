"""The schema as documentation: field tables and an editor's JSON schema, from the same models.

from hydranet.tools.config_reference import json_schema, field_tables, markdown
json_schema()     # JSON Schema (draft 2020-12) of a whole config, plug-ins included
field_tables()    # {"train": [{"field", "type", "default", "range", "description"}, ...], ...}
markdown()        # the tables as Markdown (docs/config_reference.md)

python -m hydranet.tools.config_reference            # Markdown to stdout
python -m hydranet.tools.config_reference --json     # the JSON schema to stdout
"""

from __future__ import annotations

import json
import sys
import typing
from typing import Any, Literal, Optional, Union

import annotated_types
from pydantic import BaseModel, create_model
from pydantic.json_schema import models_json_schema

from ..limits import BATCH_PIXELS_FACTOR, DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV
from ..schema.registry import registered
from ..schema.sections import LossSection, MetaSection, ModelSection, TrainSection, TransformsSection
from ..tasks import KINDS
from ..tasks.spec import TaskFields

__all__ = ["json_schema", "field_tables", "markdown", "plugin_models"]

_BOUNDS = (
    (annotated_types.Gt, ">", "gt"),
    (annotated_types.Ge, ">=", "ge"),
    (annotated_types.Lt, "<", "lt"),
    (annotated_types.Le, "<=", "le"),
)


def plugin_models() -> dict[str, dict[str, type]]:
    """``{family: {plug-in name: options model}}`` for every registered plug-in."""
    return {family: dict(registered(family)) for family in ("task", "loss", "encoder", "dataset", "weighting")}


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is typing.Annotated:
        metadata = args[1:]
        if any(type(m).__name__ == "Discriminator" for m in metadata):  # either(): its forms
            return _type_name(args[0])
        return _type_name(args[0])
    if origin is Union:
        return " or ".join(dict.fromkeys(_type_name(a) for a in args))
    if origin is Literal:
        return " | ".join(repr(a) if isinstance(a, str) else str(a).lower() for a in args)
    if origin in (list, tuple):
        inner = dict.fromkeys(_type_name(a) for a in args if a is not Ellipsis)
        if origin is tuple and len(args) > 1 and Ellipsis not in args:
            return f"[{', '.join(_type_name(a) for a in args)}]"
        return f"list of {' or '.join(inner) or 'values'}"
    if origin is dict:
        return f"mapping {_type_name(args[0])} -> {_type_name(args[1])}" if args else "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    names = {int: "integer", float: "number", bool: "true/false", str: "text"}
    if annotation in names:
        return names[annotation]
    if annotation is Any:
        return "mapping (plug-in options)"
    return getattr(annotation, "__name__", str(annotation))


def _range(field: Any) -> str:
    parts = []
    for meta in field.metadata:
        for kind, sign, attribute in _BOUNDS:
            if isinstance(meta, kind):
                value = getattr(meta, attribute)
                parts.append(f"{sign} {value:g}" if isinstance(value, float) else f"{sign} {value}")
    return ", ".join(parts)


def _default(field: Any) -> Any:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return json.loads(json.dumps(value, default=str))


def fields_of(model: type[BaseModel]) -> list[dict]:
    """One row per field of ``model``: name, type, default, range and description."""
    rows = []
    for name, field in model.model_fields.items():
        rows.append(
            {
                "field": field.alias or name,
                "type": _type_name(field.annotation),
                "default": _default(field),
                "range": _range(field),
                "description": field.description or "",
            }
        )
    return rows


def field_tables() -> dict[str, dict]:
    """``{title: {"doc": docstring, "fields": rows}}``: the sections, then every plug-in's options."""
    tables: dict[str, dict] = {}

    def add(title: str, model: type[BaseModel]) -> None:
        doc = " ".join((model.__doc__ or "").split())
        tables[title] = {"doc": doc, "fields": fields_of(model)}

    add("model", ModelSection)
    add("tasks[]", TaskFields)
    add("data.<split>.transforms", TransformsSection)
    add("train", TrainSection)
    add("loss", LossSection)
    add("meta", MetaSection)
    titles = {
        "task": "tasks[].options (kind: {})",
        "loss": "tasks[].loss_options (loss: {})",
        "encoder": "model.encoder_options (encoder: {})",
        "dataset": "data.<split> (type: {})",
        "weighting": "loss.options (weighting: {})",
    }
    for family, models in plugin_models().items():
        for name, model in models.items():
            add(titles[family].format(name), model)
    return tables


def _cell(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text.replace("|", "\\|")


def markdown() -> str:
    """The field tables as Markdown, one table per section and plug-in."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the schema by `python scripts/config_reference.py` (a test checks it is up to date);",
        "the same models validate every config, so this page cannot drift from the code.",
        "Unknown keys are errors. Numbers must be finite; numeric text such as `1e-3` is read as a",
        f"number. Image sizes are limited to {DEFAULT_MAX_PIXELS:,} pixels per image and {BATCH_PIXELS_FACTOR} x",
        f"that per batch; raise both with the environment variable `{MAX_PIXELS_ENV}`",
        "(see [reliability](reliability.md)).",
        "",
    ]
    for title, table in field_tables().items():
        lines += [f"## `{title}`", ""]
        if table["doc"]:
            lines += [table["doc"], ""]
        if not table["fields"]:
            lines += ["(no keys)", ""]
            continue
        lines += ["| field | type | default | range | description |", "|---|---|---|---|---|"]
        for row in table["fields"]:
            lines.append(
                f"| `{row['field']}` | {_cell(row['type'])} | {_cell(row['default'])} | {_cell(row['range'])} "
                f"| {_cell(row['description'])} |"
            )
        lines.append("")
    return "\n".join(lines)


def _task_variants() -> list[type[BaseModel]]:
    losses = registered("loss")
    variants = []
    for name, kind in KINDS.items():
        loss_models = tuple(losses[loss] for loss in kind.losses if loss in losses)
        fields: dict[str, Any] = {
            "kind": (Literal[name], ...),
            "options": (Optional[kind.options_model], None),
            "loss": (Optional[Literal[kind.losses]], None),
            "loss_options": (Optional[Union[loss_models]], None),
        }
        if kind.metric_names:
            fields["metrics"] = (list[Literal[kind.metric_names]], [])
        variants.append(create_model(f"Task_{name}", __base__=TaskFields, **fields))
    return variants


def json_schema() -> dict:
    """A JSON Schema of a whole config (for editors: ``yaml-language-server: $schema=...``)."""
    tasks = _task_variants()
    datasets = list(registered("dataset").values())
    encoders = list(registered("encoder").values())
    weightings = list(registered("weighting").values())
    models = [ModelSection, TrainSection, LossSection, MetaSection, *tasks, *datasets, *encoders, *weightings]
    refs, schema = models_json_schema([(m, "validation") for m in models], ref_template="#/$defs/{model}")

    def ref(model: type) -> dict:
        return refs[(model, "validation")]

    def one_of(items: list) -> dict:
        return {"oneOf": [ref(m) for m in items]}

    def any_of(items: list) -> dict:  # the options of the plug-in the section names (not told apart here)
        return {"anyOf": [ref(m) for m in items]}

    model_schema = {"allOf": [ref(ModelSection)], "properties": {"encoder_options": any_of(encoders)}}
    loss_schema = {"allOf": [ref(LossSection)], "properties": {"options": any_of(weightings)}}
    one_set = {"oneOf": [ref(m) for m in datasets]}
    train_sets = {"oneOf": [one_set, {"type": "array", "minItems": 1, "items": one_set}]}  # several: data.multi
    val_sets = {"oneOf": [one_set, {"type": "object", "additionalProperties": one_set}]}  # {name: data set}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Hydranet config",
        "type": "object",
        "additionalProperties": False,
        "required": ["tasks"],
        "properties": {
            "model": model_schema,
            "tasks": {"type": "array", "minItems": 1, "items": one_of(tasks)},
            "data": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"train": train_sets, "val": val_sets},
            },
            "train": ref(TrainSection),
            "loss": loss_schema,
            "meta": ref(MetaSection),
        },
        "$defs": schema.get("$defs", {}),
    }


def _main(argv: list[str]) -> int:
    if "--json" in argv:
        print(json.dumps(json_schema(), indent=2))
    else:
        print(markdown())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main(sys.argv[1:]))
