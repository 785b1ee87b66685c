"""SutroCredentials: saved and loaded through the Prefect server with the key masked; registrable."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import get_current_settings
from pydantic import ValidationError

from prefect_sutro import SutroCredentials


async def test_block_save_load_keeps_key_and_masks_it(sutro_server, sutro_key):
    name = f"sutro-{uuid.uuid4().hex[:8]}"
    await SutroCredentials(api_key=sutro_key, api_url=sutro_server.url).save(name)

    loaded = await SutroCredentials.load(name)
    assert loaded.api_key.get_secret_value() == sutro_key
    assert loaded.api_url == sutro_server.url.rstrip("/")
    assert sutro_key not in repr(loaded) and sutro_key not in str(loaded.model_dump())

    # What the UI / API shows without include_secrets: the key is masked, the URL is not.
    async with get_client() as client:
        doc = await client.read_block_document_by_name(name, "sutro-credentials", include_secrets=False)
    assert doc.data["api_key"] != sutro_key and set(str(doc.data["api_key"])) == {"*"}
    assert doc.data["api_url"] == sutro_server.url.rstrip("/")

    # The loaded block builds a working core client for that server and key.
    async with loaded.get_async_client() as client:
        assert await client.list_jobs() == []
    with loaded.get_client() as client:
        assert client.list_jobs() == []


def test_bad_credentials_name_the_field_and_the_fix():
    with pytest.raises(ValidationError, match="api_key is empty"):
        SutroCredentials(api_key="  ")
    with pytest.raises(ValidationError, match="api_url must start with http:// or https://"):
        SutroCredentials(api_key="k", api_url="api.sutro.sh")
    assert SutroCredentials(api_key="k").api_url == "https://api.sutro.sh"


def test_prefect_block_register_cli_registers_sutro_credentials():
    env = dict(os.environ, PREFECT_API_URL=str(get_current_settings().api.url))
    proc = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "prefect"),
            "block",
            "register",
            "-m",
            "prefect_sutro",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Sutro Credentials" in proc.stdout

    with get_client(sync_client=True) as client:
        block_type = client.read_block_type_by_slug("sutro-credentials")
    assert block_type.name == "Sutro Credentials"
