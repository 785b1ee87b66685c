"""``SutroHook``: turns an Airflow ``sutro`` connection into ``sutro_core`` clients.

The connection keeps the API key in ``password`` and the API URL in ``host`` (empty host: the
``SUTRO_API_URL`` environment variable, else the hosted service). All HTTP lives in ``sutro_core``.

Example::

    from airflow_provider_sutro.hooks.sutro import SutroHook

    client = SutroHook("sutro_default").get_conn()      # sutro_core.SutroClient
    print([job.job_id for job in client.list_jobs()])
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseHook
from sutro_core import AsyncSutroClient, SutroClient, SutroError

log = logging.getLogger(__name__)


def api_url_from_connection(host: str | None, port: int | None, schema: str | None = None) -> str | None:
    """Build the API URL from a connection's host (and optional port).

    A host with a scheme is used as given; a bare host gets ``https://``. ``None`` when no host is set,
    so ``sutro_core`` falls back to ``SUTRO_API_URL`` or the hosted URL.

    Example::

        >>> api_url_from_connection("127.0.0.1", 8000)
        'https://127.0.0.1:8000'
        >>> api_url_from_connection("http://127.0.0.1:8000/", None)
        'http://127.0.0.1:8000'
    """
    if not host:
        return None
    host = host.strip().rstrip("/")
    if "://" not in host:
        # The UI hides "schema"; honour it only when someone set it to http(s) through the CLI or env.
        scheme = schema if schema in ("http", "https") else "https"
        host = f"{scheme}://{host}"
    if port and not _has_port(host):
        host = f"{host}:{port}"
    return host


def _has_port(url: str) -> bool:
    netloc = url.split("://", 1)[1].split("/", 1)[0]
    return ":" in netloc.rsplit("]", 1)[-1]


class SutroHook(BaseHook):
    """Gives the sync and async ``sutro_core`` clients for a ``sutro`` connection.

    :param sutro_conn_id: the Airflow connection id (type ``sutro``): API key in *password*, API URL
        in *host*.

    Example::

        hook = SutroHook(sutro_conn_id="sutro_default")
        ok, message = hook.test_connection()
        client = hook.get_conn()
        async_client = await hook.get_async_conn()     # inside a trigger
    """

    conn_name_attr = "sutro_conn_id"
    default_conn_name = "sutro_default"
    conn_type = "sutro"
    hook_name = "Sutro"

    def __init__(self, sutro_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sutro_conn_id = sutro_conn_id

    @staticmethod
    def _client_kwargs(conn: Any) -> dict[str, Any]:
        api_key = conn.password or None
        if not api_key:
            log.warning("Sutro connection %r has no API key in its password field; falling back to "
                        "SUTRO_API_KEY", conn.conn_id)
        return {"api_key": api_key, "api_url": api_url_from_connection(conn.host, conn.port, conn.schema)}

    def get_conn(self, **client_options: Any) -> SutroClient:
        """Return a synchronous ``sutro_core.SutroClient`` for the connection.

        ``client_options`` go to the client (``poll=PollPolicy(...)``, ``retry=``, ``timeout=``).

        Example::

            job = SutroHook().get_conn().get_job("job-123")
        """
        conn = self.get_connection(self.sutro_conn_id)
        return SutroClient(**self._client_kwargs(conn), **client_options)

    async def get_async_conn(self, **client_options: Any) -> AsyncSutroClient:
        """Return an ``sutro_core.AsyncSutroClient``; reads the connection without blocking the event loop.

        Example::

            client = await SutroHook().get_async_conn(poll=PollPolicy(max_transient_errors=3))
            job = await client.get_job("job-123")
        """
        conn = await self.aget_connection(self.sutro_conn_id)
        return AsyncSutroClient(**self._client_kwargs(conn), **client_options)

    def test_connection(self) -> tuple[bool, str]:
        """Check the API key against the service (``GET auth/check``); used by the UI's *Test* button.

        Example::

            ok, message = SutroHook("sutro_default").test_connection()
        """
        try:
            with self.get_conn() as client:
                client.check_auth()
        except SutroError as exc:
            return False, f"Sutro connection failed: {exc}"
        except Exception as exc:  # noqa: BLE001 - the UI shows the message; never let the button crash
            return False, f"Sutro connection failed: {type(exc).__name__}: {exc}"
        return True, "Connected to Sutro: API key accepted"
