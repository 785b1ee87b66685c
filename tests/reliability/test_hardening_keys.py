"""Issue 14 item 7: API keys are stripped, never logged or raised, and a bad key fails at once."""

from __future__ import annotations

import logging
import time

import pytest

from sutro_core import AuthenticationError, InputValidationError, SutroClient, SutroConnectionError
from sutro_core.config import clean_api_key, redact, resolve_settings

from .conftest import FAST_RETRY


def test_whitespace_around_the_key_is_stripped_everywhere(sutro_server, sutro_key, monkeypatch, tmp_path):
    monkeypatch.setenv("SUTRO_API_KEY", sutro_key + "\n")
    assert resolve_settings(api_url=sutro_server.url).api_key == sutro_key
    with SutroClient(api_url=sutro_server.url, retry=FAST_RETRY) as client:
        assert client.list_jobs() == []
    monkeypatch.delenv("SUTRO_API_KEY")
    assert resolve_settings(api_key=f"  {sutro_key}\r\n", api_url=sutro_server.url).api_key == sutro_key
    monkeypatch.setattr("sutro_core.config.CONFIG_FILE", tmp_path / "config.json")
    (tmp_path / "config.json").write_text('{"api_key": "%s\\n"}' % sutro_key)
    assert resolve_settings(api_url=sutro_server.url).api_key == sutro_key


def test_a_key_an_http_header_cannot_carry_fails_before_any_request_without_showing_it():
    secret = "sk-local-SECRETPART-\n-more"
    with pytest.raises(InputValidationError) as info:
        SutroClient(api_key=secret, api_url="http://127.0.0.1:9")
    assert "SECRETPART" not in str(info.value) and "api_key" in str(info.value)
    assert clean_api_key("   ") is None


def test_a_wrong_key_is_an_authentication_error_at_once_and_never_logged(sutro_server, caplog):
    secret = "sk-local-WRONGKEY-0123456789abcdef"
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    with SutroClient(api_key=secret, api_url=sutro_server.url) as client, pytest.raises(AuthenticationError) as info:
        client.list_jobs()
    assert time.monotonic() - started < 5  # default retry policy: a retried 401 would take many seconds
    assert "WRONGKEY" not in str(info.value)
    assert not [r for r in caplog.records if "retry" in r.getMessage()]
    assert all("WRONGKEY" not in r.getMessage() for r in caplog.records)


def test_connection_errors_and_their_warnings_never_show_the_key(caplog):
    secret = "sk-local-HIDDEN-0123456789abcdef"
    caplog.set_level(logging.DEBUG)
    with SutroClient(api_key=secret, api_url="http://127.0.0.1:9", retry=FAST_RETRY) as client:
        with pytest.raises(SutroConnectionError) as info:
            client.list_jobs()
    assert "HIDDEN" not in str(info.value)
    assert all("HIDDEN" not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("text, hidden", [
    ("LocalProtocolError(\"Illegal header value b'Key sk-local-abcdef123\\\\n'\")", "abcdef123"),
    ("headers={'Authorization': 'Bearer tok_live_998877'}", "998877"),
    ("GET https://user:p4ssw0rd@api.sutro.sh/v1/x", "p4ssw0rd"),
    ("GET https://api.sutro.sh/v1/x?api_key=qwerty12345&a=1", "qwerty12345"),
    ("the key sk-live-ZZZZZZZZ leaked", "ZZZZZZZZ"),
])  # fmt: skip
def test_redact_masks_keys_in_what_a_request_shows(text, hidden):
    assert hidden not in redact(text)
    assert "***" in redact(text)
    assert redact("reattaching to job job-1 for key 0123abcd") == "reattaching to job job-1 for key 0123abcd"
    assert redact("custom secret here", secrets=["secret"]) == "custom *** here"
