"""``SutroCredentials``: the Prefect block that holds a Sutro API key and URL and builds core clients.

Example:
    >>> creds = SutroCredentials(api_key="sk_live_...", api_url="https://api.sutro.sh")
    >>> creds.save("sutro-prod")                                    # doctest: +SKIP
    >>> client = SutroCredentials.load("sutro-prod").get_client()   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr, field_validator
from sutro_core import AsyncSutroClient, SutroClient
from sutro_core.config import DEFAULT_API_URL


class SutroCredentials(CredentialsBlock):
    """Credentials for the Sutro API (hosted ``api.sutro.sh`` or a ``sutro-local`` server); the API key is a
    ``SecretStr``, shown masked in the Prefect UI, logs and ``repr``.

    Example:
        >>> creds = SutroCredentials(api_key="my-key", api_url="http://127.0.0.1:8000")
        >>> with creds.get_client() as client:          # doctest: +SKIP
        ...     client.list_jobs()
    """

    _block_type_name = "Sutro Credentials"
    _block_type_slug = "sutro-credentials"
    _logo_url = "https://sutro.sh/favicon.ico"  # type: ignore[assignment]
    _documentation_url = "https://docs.sutro.sh"  # type: ignore[assignment]
    _description = "API key and URL for Sutro batch inference and Sutro Functions."

    api_key: SecretStr = Field(
        default=..., title="API key",
        description="Sutro API key (API keys page of the Sutro app, or the key printed by sutro-local).")
    api_url: str = Field(
        default=DEFAULT_API_URL, title="API URL",
        description="Base URL of the Sutro API; point it at a sutro-local server for local runs.")

    @field_validator("api_key")
    @classmethod
    def _key_not_blank(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("api_key is empty: pass your Sutro API key (e.g. "
                             "SutroCredentials(api_key='...'))")
        return value

    @field_validator("api_url")
    @classmethod
    def _url_is_http(cls, value: str) -> str:
        value = value.strip()
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError(f"api_url must start with http:// or https://, got {value!r} "
                             f"(the hosted API is {DEFAULT_API_URL})")
        return value.rstrip("/")

    def get_client(self, **client_kwargs: Any) -> SutroClient:
        """A sync core client (``client_kwargs``: ``timeout``, ``retry``, ``poll``); ``with`` closes it.

        Example:
            >>> with SutroCredentials(api_key="k").get_client() as client:   # doctest: +SKIP
            ...     client.get_job_status("job-123")
        """
        return SutroClient(api_key=self.api_key.get_secret_value(), api_url=self.api_url, **client_kwargs)

    def get_async_client(self, **client_kwargs: Any) -> AsyncSutroClient:
        """An asynchronous core client (``client_kwargs`` as for ``get_client``); ``async with`` closes it.

        Example:
            >>> async with SutroCredentials(api_key="k").get_async_client() as client:  # doctest: +SKIP
            ...     await client.get_job_status("job-123")
        """
        return AsyncSutroClient(api_key=self.api_key.get_secret_value(), api_url=self.api_url,
                                **client_kwargs)
