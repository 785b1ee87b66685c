"""The console's pure parts: formatting, escaping, the results preview, session signing."""

from __future__ import annotations

import dataclasses
import time

import pyarrow as pa
import pyarrow.parquet as pq
from sutro_local.console import session as sess
from sutro_local.console import views
from sutro_local.console.layout import fmt_cost, fmt_duration
from sutro_local.console.preview import preview
from sutro_local.store import JobRow


def _job(**over) -> JobRow:
    base = {"seq": 1, "job_id": "job-1", "owner": "o", "status": "RUNNING", "model": "m", "job_priority": 0,
            "num_rows": 10, "created_at": "2026-01-05T10:00:00.000Z", "input_tokens": 0, "output_tokens": 0,
            "rows_processed": 0, "dry_run": False, "est_tokens": 0, "params": {}}  # fmt: skip
    values = {f.name: base.get(f.name) for f in dataclasses.fields(JobRow)}
    return JobRow(**{**values, **over})


def test_costs_and_durations_read_well_at_any_size():
    assert [fmt_cost(x) for x in (None, 0, 1.234, 0.0031, 0.00002)] == [
        "—",
        "$0",
        "$1.23",
        "$0.0031",
        "$0.00002",
    ]
    assert [fmt_duration(s) for s in (None, 9.34, 125, 7300)] == ["—", "9.3 s", "2 min 5 s", "2 h 1 min"]


def test_job_names_and_failures_are_escaped():
    evil = '<script>alert("x")</script>'
    doc, _ = views.jobs_page([_job(name=evil)], {"RUNNING": 1}, None, "me", "tok")
    assert evil not in doc and "&lt;script&gt;" in doc
    doc, _ = views.job_page(
        _job(name=evil, status="FAILED", failure_reason=evil), None, None, None, "me", "tok"
    )
    assert evil not in doc and doc.count("&lt;script&gt;") >= 2


def test_the_jobs_list_is_capped_and_says_so():
    jobs = [_job(job_id=f"job-{i}") for i in range(views.MAX_LISTED + 3)]
    html = views.jobs_table(jobs)
    assert html.count("<tr>") == views.MAX_LISTED + 1  # + header row
    assert f"newest {views.MAX_LISTED:,} of {len(jobs):,}" in html


def test_preview_unpacks_json_and_summarises_vectors(tmp_path):
    path = tmp_path / "r.parquet"
    pq.write_table(
        pa.table({
            "inputs": ['{"text": "hi"}', '{"text": "yo"}'],
            "outputs": [{"label": "bug", "score": 0.91234}, {"label": "billing", "score": 0.5}],
            "vec": [[0.1] * 384, [0.2] * 384],
        }),
        path,
    )  # fmt: skip
    cols, rows, total = preview(path, limit=1)
    assert cols == ["inputs.text", "outputs.label", "outputs.score", "vec"] and total == 2
    assert rows == [["hi", "bug", "0.9123", "[0.1, 0.1, 0.1, 0.1, … (384 items)]"]]


def test_sessions_are_signed_and_expire():
    secret = b"s" * 32
    s = sess.Session.new("owner-hash", "ci")
    value = sess.sign(secret, s)
    assert sess.verify(secret, value) == s
    assert sess.verify(b"other" * 8, value) is None
    body, mac = value.split(".")
    assert sess.verify(secret, body[:-1] + ("A" if body[-1] != "A" else "B") + "." + mac) is None
    old = dataclasses.replace(s, expires=int(time.time()) - 1)
    assert sess.verify(secret, sess.sign(secret, old)) is None
    assert sess.csrf_token(secret, s) != sess.csrf_token(secret, sess.Session.new("owner-hash", "ci"))
