"""Checks every JSON value a client sends before it reaches SQLite, parquet or a JSON response.

Python's json module accepts lone UTF-16 surrogates (``"\\ud800"``) and any nesting depth; both
blew up later (UnicodeEncodeError when encoding, RecursionError in validators) as 500s. This walks
a parsed value once, iteratively, and raises ``ApiError(400)`` naming where the problem is.

Example:
    >>> check_json({"inputs": ["ok"]})
    >>> try:
    ...     check_json({"inputs": ["\\ud800"]})
    ... except ApiError as exc:
    ...     print(exc.status, exc.detail[:30])
    400 field 'inputs[0]' holds a lone
"""

from __future__ import annotations

from typing import Any

from .errors import ApiError

MAX_JSON_DEPTH = 64  # far above any real schema or input row; a 98-deep json_schema gave a 500


def is_clean_text(text: str) -> bool:
    """True when `text` encodes as UTF-8 (no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _where(path: tuple[Any, ...], root: str) -> str:
    out = root
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def check_json(value: Any, root: str = "", max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise ApiError(400) if `value` nests deeper than `max_depth` or holds a lone surrogate
    (in a string or an object key)."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if len(path) > max_depth:
            raise ApiError(400, "invalid_request",
                           f"field {_where(path[:3], root)!r} nests more than {max_depth} levels deep; flatten it")  # fmt: skip
        if isinstance(item, str):
            if not is_clean_text(item):
                raise _surrogate(_where(path, root))
        elif isinstance(item, dict):
            for k, v in item.items():
                if isinstance(k, str) and not is_clean_text(k):
                    raise _surrogate(_where(path, root) + " (an object key)")
                stack.append((v, (*path, k if isinstance(k, str) and is_clean_text(k) else "?")))
        elif isinstance(item, list):
            stack.extend((v, (*path, i)) for i, v in enumerate(item))


def _surrogate(where: str) -> ApiError:
    return ApiError(
        400, "invalid_text",
        f"field {where[:200]!r} holds a lone UTF-16 surrogate (e.g. \\ud800), which is not valid Unicode text; "
        "send valid UTF-8 strings",
    )  # fmt: skip
