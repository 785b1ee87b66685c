"""The web console in a real browser (Debian's Chromium via Playwright) against a real sutro-local.

Screenshots land in tests/.artifacts/console/ (printed at the start of the run).
"""

from __future__ import annotations

import re

import pytest
from sutro_core import SutroClient

from .conftest import sign_in, submit, wait_status  # plain helpers, not fixtures

pytestmark = pytest.mark.slow


def test_job_url_without_session_signs_in_then_opens_the_job(sutro_server, sutro_key, context, artifacts):
    job_id = submit(
        sutro_server.url, sutro_key, model="all-minilm-l6-v2", inputs=["hello", "world"], name="link-test"
    )
    url = SutroClient(api_key=sutro_key, api_url=sutro_server.url).job_url(job_id)
    assert url == f"{sutro_server.url}/console/jobs/{job_id}"
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#api_key")
    assert "/console/login" in page.url and sutro_key not in page.url
    page.screenshot(path=str(artifacts / "01-sign-in.png"))
    sign_in(page, sutro_key)
    assert page.url == url  # straight on to the job, no key anywhere in the URL
    page.wait_for_selector("h1:has-text('link-test')")
    cookie = next(c for c in context.cookies() if c["name"] == "sutro_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and sutro_key not in cookie["value"]
    # a signed-in browser following the link again goes straight to the page
    page.goto(url)
    page.wait_for_selector("h1:has-text('link-test')")
    assert page.url == url
    # ... also when the link is clicked in another site's UI (an orchestrator's job link): the
    # SameSite=Strict cookie is withheld on that first request, the same-site hop brings it back
    context.route(
        "http://orchestrator.example/**",
        lambda route: route.fulfill(content_type="text/html", body=f'<a id="job" href="{url}">Sutro job</a>'),
    )
    page.goto("http://orchestrator.example/run/1")
    seen: list[str] = []
    page.on("request", lambda req: seen.append(req.url) if req.is_navigation_request() else None)
    page.click("#job")
    page.wait_for_selector("h1:has-text('link-test')")
    assert page.url == url and page.locator("#api_key").count() == 0
    assert any("/console/login" in u for u in seen), seen  # the hop happened (no sign-in form shown)


def test_wrong_key_is_refused_on_the_sign_in_page(sutro_server, context):
    page = context.new_page()
    page.goto(f"{sutro_server.url}/console/jobs")
    page.wait_for_selector("#api_key")
    sign_in(page, "sk-local-not-a-key")
    assert page.locator(".alert").inner_text().startswith("Unknown API key")
    assert not [c for c in context.cookies() if c["name"] == "sutro_console"]


def test_running_job_shows_live_progress_then_cancel(sutro_server, sutro_key, context, artifacts):
    # slow-embed: one row a chunk, >= 0.3 s a chunk: 200 rows keep it RUNNING for about a minute
    job_id = submit(
        sutro_server.url,
        sutro_key,
        model="slow-embed",
        inputs=[f"row {i}" for i in range(200)],
        name="slow-embedding-run",
    )
    wait_status(sutro_server.url, sutro_key, job_id, ("RUNNING",))
    page = context.new_page()
    page.goto(f"{sutro_server.url}/console/jobs/{job_id}")
    sign_in(page, sutro_key)
    page.wait_for_selector(".badge.st-running")
    rows = page.locator('.stat [data-field="rows"]')
    first = rows.inner_text()
    # the page polls: the processed-row count grows without a reload
    page.wait_for_function(
        "(first) => document.querySelector('.stat [data-field=\"rows\"]').textContent !== first",
        arg=first,
        timeout=15_000,
    )
    done = int(rows.inner_text().split("/")[0].replace(",", ""))
    assert 0 < done < 200
    assert 0 < float(page.locator(".progress-big progress").get_attribute("value") or 0) < 100
    assert int(page.locator('[data-field="input_tokens"]').first.inner_text().replace(",", "")) > 0
    assert float(page.locator('[data-field="tok_s"]').inner_text().replace(",", "")) > 0
    page.screenshot(path=str(artifacts / "02-job-running.png"), full_page=True)

    # the jobs list shows it too, filterable by status
    page.goto(f"{sutro_server.url}/console/jobs?status=RUNNING")
    page.wait_for_selector(f"text={job_id}")
    page.screenshot(path=str(artifacts / "03-jobs-running-filter.png"), full_page=True)
    page.goto(f"{sutro_server.url}/console/jobs?status=SUCCEEDED")
    assert page.locator(f"text={job_id}").count() == 0

    page.goto(f"{sutro_server.url}/console/jobs/{job_id}")
    page.once("dialog", lambda d: d.accept())
    page.click("#cancel")
    page.wait_for_selector(
        ".badge.st-cancelled", timeout=30_000
    )  # CANCELLING, then the poll reloads at CANCELLED
    assert wait_status(sutro_server.url, sutro_key, job_id, ("CANCELLED",)) == "CANCELLED"
    assert page.locator("#cancel").count() == 0
    page.screenshot(path=str(artifacts / "04-job-cancelled.png"), full_page=True)


def test_results_preview_downloads_and_functions(sutro_server, sutro_key, context, artifacts):
    texts = [
        "I was charged twice",
        "The app crashes on login",
        "Please add dark mode",
        "I forgot my password",
    ]
    fn_job = submit(
        sutro_server.url,
        sutro_key,
        model="ticket-triage",
        inputs=[{"text": t} for t in texts],
        name="ticket-triage-day",
    )
    emb_job = submit(
        sutro_server.url, sutro_key, model="all-minilm-l6-v2", inputs=texts, name="ticket-vectors"
    )
    for j in (fn_job, emb_job):
        assert wait_status(sutro_server.url, sutro_key, j, ("SUCCEEDED", "FAILED")) == "SUCCEEDED"
    page = context.new_page()
    page.goto(f"{sutro_server.url}/console/jobs/{fn_job}")
    sign_in(page, sutro_key)
    page.wait_for_selector("table.results")
    headers = page.locator("table.results th").all_inner_texts()
    assert {"inputs.text", "outputs.label"} <= set(headers), headers  # JSON inputs and outputs unpacked
    body = page.locator("table.results tbody").inner_text()
    assert "charged twice" in body
    page.screenshot(path=str(artifacts / "05-function-results.png"), full_page=True)
    for fmt, suffix in [("parquet", ".parquet"), ("csv", ".csv.zip"), ("json", ".json")]:
        with page.expect_download() as dl:
            page.click(f"a[href$='/download/{fmt}']")
        assert dl.value.suggested_filename == f"{fn_job}{suffix}"
        assert dl.value.path().stat().st_size > 0

    page.goto(f"{sutro_server.url}/console/jobs/{emb_job}")
    cell = page.locator("table.results tbody tr").first.inner_text()
    assert re.search(r"384 items", cell), cell  # embeddings summarised, not 384 numbers
    page.screenshot(path=str(artifacts / "06-embedding-results.png"), full_page=True)

    page.goto(f"{sutro_server.url}/console/jobs")
    page.wait_for_selector(f"text={fn_job}")
    page.screenshot(path=str(artifacts / "07-jobs.png"), full_page=True)
    page.click("nav >> text=Functions")
    page.wait_for_selector("h2:has-text('ticket-triage')")
    assert page.locator("text=billing").count() > 0 and page.locator(".tag:has-text('text')").count() > 0
    page.screenshot(path=str(artifacts / "08-functions.png"), full_page=True)
    page.click("nav >> text=Models")
    row = page.locator("tr:has-text('all-minilm-l6-v2')").inner_text()
    assert "$0.02" in row
    page.screenshot(path=str(artifacts / "09-models.png"), full_page=True)


def test_another_key_cannot_open_the_job(sutro_server, sutro_key, context, artifacts):
    job_id = submit(
        sutro_server.url, sutro_key, model="all-minilm-l6-v2", inputs=["private"], name="mine-only"
    )
    other = sutro_server.create_key("someone-else")
    page = context.new_page()
    page.goto(f"{sutro_server.url}/console/jobs/{job_id}")
    sign_in(page, other)
    assert page.locator("h1").inner_text() == "Job not found"
    assert "mine-only" not in page.content()
    page.screenshot(path=str(artifacts / "10-other-key.png"))
    for path in (f"/console/jobs/{job_id}/live", f"/console/jobs/{job_id}/download/parquet"):
        resp = page.goto(f"{sutro_server.url}{path}")
        assert resp.status == 404, path
    page.goto(f"{sutro_server.url}/console/jobs")
    assert page.locator(f"text={job_id}").count() == 0
