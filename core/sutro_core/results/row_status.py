"""Row status: what each row of a job's results is worth, so no bad row passes as a good one.

Every artifact carries ``sutro_row_status`` and ``sutro_job_id`` (the job that produced the row):

- ``ok``: a complete output (for a JSON-schema job, or a Function that returns objects: an object valid
  against the expected shape);
- ``cut``: the engine stopped at ``max_tokens`` (``finish_reason`` "length"); what it wrote is kept;
- ``invalid``: complete, but not valid against the job's JSON schema (not JSON, not an object, a required
  field missing, a field of the wrong type) or, for a Function that returns objects, not an object;
- ``missing``: no output at all (null or empty), e.g. an engine error or a row the job did not return.

A row is paid for whatever its status; repairs re-run only rows that are not ``ok``.

Example:
    >>> statuses(pl.Series(["{\\"a\\": 1}", "{\\"a\\"", None]), pl.Series(["stop", "length", "stop"]),
    ...          {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}).to_list()
    ['ok', 'cut', 'missing']
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl

ROW_STATUS = "sutro_row_status"
ROW_JOB_ID = "sutro_job_id"
OK, CUT, INVALID, MISSING = "ok", "cut", "invalid", "missing"
#: Every status, best first (a repair keeps the better of two outputs for a row).
STATUSES = (OK, CUT, INVALID, MISSING)

_JSON_TYPES: dict[str, Any] = {
    "string": str, "boolean": bool, "object": dict, "array": list, "null": type(None),
}


def statuses(outputs: pl.Series, finish_reason: pl.Series | None, json_schema: dict[str, Any] | None,
             expect_objects: bool = False) -> pl.Series:
    """The status of each row (a String Series named ``sutro_row_status``), from its raw output (JSON text
    for schema jobs and Functions, text, or a vector), the engine's ``finish_reason`` when it has one, and
    the job's JSON schema. ``expect_objects``: outputs should be JSON objects even without a schema (a
    Function's)."""
    n = outputs.len()
    missing = outputs.is_null()
    if outputs.dtype == pl.String:
        # A regex, not strip_chars(): stripping copies every output (~115 MB per 1M 100-character outputs);
        # ``\s`` is Unicode White_Space, what strip_chars() strips.
        missing = missing | outputs.str.contains(r"^\s*$")
    elif isinstance(outputs.dtype, pl.List):
        missing = missing | (outputs.list.len() == 0)
    cut = (finish_reason == "length").fill_null(False) if finish_reason is not None else pl.repeat(False, n, eager=True)
    if (json_schema or expect_objects) and outputs.dtype == pl.String:
        invalid = ~pl.Series([_valid(v, json_schema) for v in outputs.to_list()], dtype=pl.Boolean)
    else:
        invalid = pl.repeat(False, n, eager=True)
    return (pl.select(pl.when(pl.lit(missing)).then(pl.lit(MISSING))
                      .when(pl.lit(cut)).then(pl.lit(CUT))
                      .when(pl.lit(invalid)).then(pl.lit(INVALID))
                      .otherwise(pl.lit(OK)).alias(ROW_STATUS)).to_series())


def _valid(text: str | None, schema: dict[str, Any] | None) -> bool:
    """Whether ``text`` is a JSON object valid against ``schema`` (any object when there is none)."""
    if text is None:
        return True  # counted as missing
    try:
        value = json.loads(text)
    except ValueError:
        return False
    if not isinstance(value, dict):
        return False
    return schema is None or matches(value, schema)


def matches(value: Any, schema: Any) -> bool:
    """``value`` against the JSON-schema subset structured outputs use: ``type`` (or a list of types),
    ``enum``, ``const``, an object's ``properties`` / ``required`` / ``additionalProperties: false``, an
    array's ``items``; ``anyOf`` / ``oneOf`` as "any branch matches". Other keywords are not checked.

    Example:
        >>> matches({"a": "x"}, {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}})
        False
    """
    if not isinstance(schema, dict):
        return True
    if "enum" in schema and value not in schema["enum"]:
        return False
    if "const" in schema and value != schema["const"]:
        return False
    branches = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(branches, list) and branches and not any(matches(value, b) for b in branches):
        return False
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_is_type(value, k) for k in kinds):
            return False
    if isinstance(value, dict):
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        if any(name not in value for name in schema.get("required") or ()):
            return False
        if schema.get("additionalProperties") is False and any(name not in props for name in value):
            return False
        return all(matches(value[name], sub) for name, sub in props.items() if name in value)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return all(matches(item, schema["items"]) for item in value)
    return True


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool) or (isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    expected = _JSON_TYPES.get(kind)
    return expected is None or isinstance(value, expected)


def counts(status: pl.Series) -> dict[str, int]:
    """Rows per status, every status present (0 where none).

    Example:
        >>> counts(pl.Series(["ok", "cut", "ok"]))
        {'ok': 2, 'cut': 1, 'invalid': 0, 'missing': 0}
    """
    seen = status.value_counts()
    found = dict(zip(seen[status.name].to_list(), seen["count"].to_list()))
    return {s: int(found.get(s, 0)) for s in STATUSES}
