"""read_jsonl returns every object of a JSONL file, or raises the caller's error naming the file and line."""

from __future__ import annotations

import json

import pytest

from mlflow_nlsr.errors import CalibrationError, InputError
from mlflow_nlsr.io.jsonl import read_jsonl

SCHEMA = {"id": (str, int), "prompt": str}


def test_objects_are_returned_in_file_order_and_blank_lines_skipped(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"id": 1, "prompt": "a", "x": [1]}\n\n   \r\n{"id": "b", "prompt": "c"}\r\n')
    assert read_jsonl(f, required=SCHEMA, what="data file") == [
        {"id": 1, "prompt": "a", "x": [1]},
        {"id": "b", "prompt": "c"},
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{nope", "d.jsonl:3: not valid JSON"),
        ("[1, 2]", "d.jsonl:3: expected a JSON object, found list"),
        ('{"id": 1}', "d.jsonl:3: field 'prompt' should be str, found None"),
        ('{"id": true, "prompt": "p"}', "d.jsonl:3: field 'id' should be str or int, found True"),
        ('{"id": 1.5, "prompt": "p"}', "d.jsonl:3: field 'id' should be str or int, found 1.5"),
    ],
)
def test_a_bad_line_is_named_by_file_and_number(tmp_path, line, message):
    f = tmp_path / "d.jsonl"
    f.write_text('{"id": 1, "prompt": "a"}\n\n' + line + "\n")
    with pytest.raises(InputError, match=message):
        read_jsonl(f, required=SCHEMA, what="data file")


def test_a_bool_passes_only_where_bool_is_required(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"flag": True}) + "\n")
    assert read_jsonl(f, required={"flag": bool}, what="data file") == [{"flag": True}]
    with pytest.raises(InputError, match="should be int"):
        read_jsonl(f, required={"flag": int}, what="data file")


def test_nonempty_rejects_blank_strings_only_when_asked(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"prompt": "  "}) + "\n")
    assert read_jsonl(f, required={"prompt": str}, what="data file") == [{"prompt": "  "}]
    with pytest.raises(InputError, match=r"field 'prompt' should be non-empty string, found '  '"):
        read_jsonl(f, required={"prompt": str}, what="data file", nonempty=True)


def test_the_callers_error_class_location_format_and_unit_are_used(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text('{"prompt": "a"}\n{"q": 1}\n')
    with pytest.raises(CalibrationError, match=r"c.jsonl line 2: field 'prompt'"):
        read_jsonl(
            f,
            required={"prompt": str},
            what="calibration file",
            error=CalibrationError,
            at="{path} line {line}",
        )
    f.write_text("\n\n")
    with pytest.raises(CalibrationError, match=r"calibration file .*c.jsonl holds no samples"):
        read_jsonl(f, required={}, what="calibration file", error=CalibrationError, unit="samples")


def test_missing_and_undecodable_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match=r"data file .*nope.jsonl does not exist"):
        read_jsonl(tmp_path / "nope.jsonl", required={}, what="data file")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"prompt": "\xe9"}\n')
    with pytest.raises(InputError, match=r"cannot read data file .*latin1.jsonl"):
        read_jsonl(tmp_path / "latin1.jsonl", required={}, what="data file")
