"""A dataset described by a list file: one sample per line, whitespace-separated paths.

Format::

    # image segmentation depth            <- optional header naming the columns
    rgb/0001.png  labels/0001.png  depth/0001.png
    rgb/0002.png  -                depth/0002.png   <- "-" = this label is missing

Without a header the columns are, in order, ``image segmentation depth normals`` (a line
may stop early: the remaining labels are missing). So a two-column list such as the common
NYUD ``train.nyu`` (``image<TAB>mask``) reads as image + segmentation. Any other lines
starting with ``#`` are comments. Columns whose name is not a dense kind hold image-level
values (a class id, or comma-separated numbers for regression) matched to tasks by name.

Relative paths are resolved against ``root`` or, by default, the list file's folder. Depth
PNGs are uint16 ``metres * depth_scale`` (NYUD 5000, KITTI 256; ``.npy`` = float metres);
segmentation PNGs hold class ids (single channel or palette-mode PNG) or colours mapped
through ``palette``; normals PNGs store ``(n + 1) / 2 * 255`` (``.npy`` = float vectors).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Union

from ..errors import DataError
from ..tasks import KINDS, LabelSources, TaskSpec
from .base import LabelledDataset
from .io import NYUD_DEPTH_SCALE, load_palette, read_image
from .sample import task_field

log = logging.getLogger("hydranet.data")

DEFAULT_COLUMNS = ("image", "segmentation", "depth", "normals")
MISSING = "-"


def parse_list_file(path: Union[str, Path], columns: Optional[Sequence[str]] = None) -> tuple[list, list]:
    """Read a list file into ``(column names, rows)``; each row is ``(line number, {column: text})``
    with missing entries left out. DataError on a missing file, a row with too many columns or
    no image, or an empty list."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: list file not found")
    try:
        # utf-8-sig: a byte-order mark (as Windows editors write) is not part of the header;
        # CRLF line ends are split by splitlines() and stripped with the rest of the whitespace
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read list file: {exc}") from exc
    names = list(columns) if columns else None
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if "\x00" in line:
            raise DataError(f"{path}:{lineno}: a NUL byte in the line (a binary file, not a list file?)")
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            tokens = line[1:].split()
            if not rows and names is None and "image" in tokens:
                names = tokens
            continue
        if names is None:
            names = list(DEFAULT_COLUMNS)
        tokens = line.split()
        if len(tokens) > len(names):
            raise DataError(f"{path}:{lineno}: {len(tokens)} columns but only {len(names)} named ({' '.join(names)})")
        entry = {n: t for n, t in zip(names, tokens) if t != MISSING}
        if "image" not in entry:
            raise DataError(f"{path}:{lineno}: no image path")
        rows.append((lineno, entry))
    if names is None or "image" not in names:
        raise DataError(f"{path}: the header must name an 'image' column")
    if not rows:
        raise DataError(f"{path}: list file has no samples")
    return names, rows


def check_columns(path: Union[str, Path], names: Sequence[str], valid: Sequence[str]) -> None:
    """Refuse a header naming a column no task reads (a typo would silently drop the labels).

    Raises:
        DataError: naming the file, the unknown column(s) and the valid names.
    """
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise DataError(
            f"{path}: unknown column(s) {', '.join(map(repr, unknown))} in the header; "
            f"valid columns: {', '.join(dict.fromkeys(valid))}"
        )


class ListDataset(LabelledDataset):
    """Samples listed in a list file (format in the module docstring).

    Args:
        list_file: the list file.
        tasks: task specs; a task reads the column named by ``fields[task]``, else its kind
            (dense tasks) or its name (image-level tasks). A task without a column is absent
            from every sample.
        root: folder that relative paths are resolved against (default: the list file's folder).
        depth_scale: depth PNG units per metre (NYUD 5000, KITTI 256).
        fields: ``{task name: column name}`` overrides.
        transform: ``transform(raw_sample, tasks) -> item`` (e.g. :func:`build_transforms`).
        skip_bad: skip samples whose files are missing or bad (see :class:`LabelledDataset`).
        palette: C x 3 RGB colours (or a ``.npy`` path) for colour-coded segmentation PNGs.
        columns: column names when the file has no header (default ``image segmentation depth normals``).
    """

    def __init__(
        self,
        list_file: Union[str, Path],
        tasks: Sequence[TaskSpec],
        root=None,
        depth_scale: float = NYUD_DEPTH_SCALE,
        fields: Optional[Mapping[str, str]] = None,
        transform: Optional[Callable] = None,
        skip_bad: bool = False,
        palette=None,
        columns: Optional[Sequence[str]] = None,
    ):
        super().__init__(tasks, fields, transform, skip_bad)
        self.list_file = Path(list_file)
        self.root = Path(root) if root is not None else self.list_file.parent
        if depth_scale <= 0:
            raise DataError(f"{self.list_file}: depth_scale must be positive, got {depth_scale}")
        self.depth_scale = float(depth_scale)
        self.palette = load_palette(palette)
        self.label_sources = LabelSources({"palette": self.palette, "depth_scale": self.depth_scale})
        self.columns, self.rows = parse_list_file(self.list_file, columns)
        dense_kinds = [name for name, kind in KINDS.items() if kind.dense]
        check_columns(
            self.list_file,
            self.columns,
            [*DEFAULT_COLUMNS, *dense_kinds, *(t.name for t in self.tasks), *self.fields.values()],
        )
        self.task_columns = {}
        for spec in self.tasks:
            col = task_field(spec, self.fields)
            if col in self.columns:
                self.task_columns[spec.name] = col
            else:
                log.info("%s: no column %r, task %r has no labels here", self.list_file, col, spec.name)

    def __len__(self) -> int:
        return len(self.rows)

    def labelled_tasks(self) -> set:
        return {name for name, col in self.task_columns.items() if any(col in entry for _, entry in self.rows)}

    def sample_id(self, index: int) -> str:
        return str(Path(self.rows[index][1]["image"]).with_suffix(""))

    def _path(self, text: str) -> Path:
        p = Path(text).expanduser()
        return p if p.is_absolute() else self.root / p

    def load_raw(self, index: int) -> tuple[dict, dict]:
        lineno, entry = self.rows[index]
        image_path = self._path(entry["image"])
        sample = {"image": read_image(image_path), "id": self.sample_id(index)}
        sources = {"image": str(image_path)}
        for spec in self.tasks:
            col = self.task_columns.get(spec.name)
            if col is None or col not in entry:
                continue
            text = entry[col]
            if spec.dense:
                path = self._path(text)
                sources[spec.name] = str(path)
                sample[spec.name] = spec.task_kind.read_label(spec, path, self.label_sources)
            else:
                sources[spec.name] = f"{self.list_file}:{lineno}"
                sample[spec.name] = spec.task_kind.parse_value(spec, text, f"{self.list_file}:{lineno}")
        return sample, sources
