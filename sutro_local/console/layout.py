"""HTML building blocks of the console: escaping, number/time formats, the page shell.

Every value that reaches HTML goes through `esc` (or a formatter built on it); pages are plain
server-rendered HTML with one stylesheet and one script, both shipped in the package.

Example:
    >>> fmt_cost(0.00002)
    '$0.00002'
    >>> status_badge("RUNNING")
    '<span class="badge st-running" data-field="status">RUNNING</span>'
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

PREFIX = "/console"
STATUSES = ("QUEUED", "STARTING", "RUNNING", "CANCELLING", "SUCCEEDED", "FAILED", "CANCELLED")


def esc(value: Any) -> str:
    """HTML-escaped text of any value (None -> empty)."""
    return "" if value is None else html.escape(str(value), quote=True)


def fmt_int(n: int | None) -> str:
    """1234567 -> '1,234,567' (None -> '—')."""
    return "—" if n is None else f"{int(n):,}"


def fmt_cost(x: float | None) -> str:
    """A USD amount readable at any size: '$1.25', '$0.0031', '$0.00002', '$0'."""
    if x is None:
        return "—"
    if x == 0:
        return "$0"
    if abs(x) >= 0.01:
        return f"${x:,.2f}"
    text = f"{x:.8f}".rstrip("0")
    return f"${text}" if text not in ("0.", "-0.") else "<$0.00000001"


def parse_ts(ts: str | None) -> datetime | None:
    """The wire timestamp ('2026-01-05T10:00:00.000Z') as an aware datetime."""
    if not ts:
        return None
    return datetime.fromisoformat(ts)  # 3.11+ reads the trailing Z


def fmt_ts(ts: str | None) -> str:
    """A <time> element in UTC, e.g. '2026-01-05 10:00:03'."""
    dt = parse_ts(ts)
    if dt is None:
        return '<span class="muted">—</span>'
    return f'<time datetime="{esc(ts)}">{dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")}</time>'


def fmt_duration(seconds: float | None) -> str:
    """9.3 -> '9.3 s', 125 -> '2 min 5 s' (None -> '—')."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def status_badge(status: str) -> str:
    """A coloured status pill."""
    return f'<span class="badge st-{esc(status.lower())}" data-field="status">{esc(status)}</span>'


def progress_bar(done: int, total: int) -> str:
    """A thin progress bar (a <progress> element: the CSP allows no inline style attributes)."""
    pct = 100.0 if total <= 0 else min(100.0, 100.0 * done / total)
    return f'<progress class="bar" max="100" value="{pct:.1f}" title="{done:,} / {total:,} rows"></progress>'


def table(
    headers: Iterable[str], rows: Iterable[Iterable[str]], cls: str = "grid", empty: str = "Nothing here yet."
) -> str:
    """A table of already-escaped cell HTML."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    if not body:
        return f'<p class="empty">{esc(empty)}</p>'
    return f'<div class="table-wrap"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def page(
    title: str,
    body: str,
    *,
    user: str | None = None,
    csrf: str | None = None,
    active: str = "",
    status: int = 200,
) -> tuple[str, int]:
    """The full HTML document: header with navigation (and the signed-in key's name), then `body`."""
    nav = ""
    if user is not None:
        links = [("jobs", "Jobs"), ("functions", "Functions"), ("models", "Models")]
        items = "".join(
            f'<a href="{PREFIX}/{k}" class="{"on" if k == active else ""}">{label}</a>' for k, label in links
        )
        nav = (
            f'<nav>{items}</nav><div class="who"><span class="muted">key</span> <b>{esc(user)}</b>'
            f'<form method="post" action="{PREFIX}/logout"><input type="hidden" name="csrf" value="{esc(csrf)}">'
            f'<button class="link" type="submit">Sign out</button></form></div>'
        )
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · sutro-local</title>
<link rel="stylesheet" href="{PREFIX}/static/console.css"><link rel="icon" href="{PREFIX}/static/favicon.svg">
<script src="{PREFIX}/static/console.js" defer></script></head>
<body><header class="top"><a class="brand" href="{PREFIX}/jobs"><span class="logo">◆</span> sutro-local</a>{nav}</header>
<main>{body}</main></body></html>"""
    return doc, status
