"""JSON Lines input files: one object a line, required typed fields, errors naming the file and line."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow_nlsr.errors import InputError, NLSRError

Kind = type | tuple[type, ...]


def _kind_names(kinds: tuple[type, ...], nonempty: bool) -> str:
    return " or ".join("non-empty string" if nonempty and k is str else k.__name__ for k in kinds)


def _bad_field(row: dict[str, Any], field: str, kind: Kind, nonempty: bool) -> str | None:
    """None when ``row[field]`` has the kind; else what was expected (bool never passes for int)."""
    value = row.get(field)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))
    if ok and nonempty and isinstance(value, str) and not value.strip():
        ok = False
    return None if ok else f"field {field!r} should be {_kind_names(kinds, nonempty)}, found {value!r}"


def read_jsonl(
    path: str | Path,
    *,
    required: Mapping[str, Kind],
    what: str,
    error: type[NLSRError] = InputError,
    at: str = "{path}:{line}",
    nonempty: bool = False,
    unit: str = "rows",
) -> list[dict[str, Any]]:
    """Read the JSON objects of a JSONL file (blank lines skipped); `error` names what is wrong and where.

    Every row must be an object whose `required` fields have the given type(s) (a bool is not an int),
    strings non-blank when `nonempty`. `what` names the file in messages ("calibration file"), `at`
    formats a line's location from ``{path}`` and ``{line}``, `unit` says what an empty file lacks.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} does not exist")
    try:
        with path.open(encoding="utf-8") as fh:
            lines = list(fh)
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {what} {path}: {exc}") from exc
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = at.format(path=path, line=number)
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{where}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise error(f"{where}: expected a JSON object, found {type(row).__name__}")
        for field, kind in required.items():
            problem = _bad_field(row, field, kind, nonempty)
            if problem is not None:
                raise error(f"{where}: {problem}")
        rows.append(row)
    if not rows:
        raise error(f"{what} {path} holds no {unit}")
    return rows
