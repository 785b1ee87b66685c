"""What SutroClient and AsyncSutroClient share: settings, headers, the TLS context and job links."""

from __future__ import annotations

import functools
import os
import ssl
from urllib.parse import urlsplit

from . import __version__
from .config import DEFAULT_API_URL, resolve_settings
from .retrying import PollPolicy, RetryPolicy

HOSTED_APP_URL = "https://app.sutro.sh"


@functools.lru_cache(maxsize=1)
def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context (certifi's CAs, as httpx uses) for every client in the process.

    Building one costs ~40 ms of CPU; a triggerer that makes a client per deferred task would spend
    that per task (issue 17). An ``SSLContext`` is safe to share between connections and threads.
    """
    import certifi

    # As httpx does with trust_env: SSL_CERT_FILE / SSL_CERT_DIR (a company CA) win over certifi's bundle.
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    return ssl.create_default_context(cafile=certifi.where())


class ClientBase:
    """Settings and operations shared by both clients (not used directly)."""

    def __init__(
        self,
        api_key: str | None = None,
        api_url: str | None = None,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
    ) -> None:
        settings = resolve_settings(api_key, api_url)
        self.api_key = settings.api_key
        self.api_url = settings.api_url
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.poll = poll or PollPolicy()

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"sutro-pipelines/{__version__}"}
        if self.api_key:
            headers["Authorization"] = f"Key {self.api_key}"
        return headers

    def __repr__(self) -> str:  # never show the key
        return f"{type(self).__name__}(api_url={self.api_url!r})"

    def job_url(self, job_id: str) -> str:
        """A link to the job for UIs: the hosted app's job page, or the sutro-local console's job page
        (``<server>/console/jobs/<id>``; the console asks a browser without a session to sign in)."""
        if urlsplit(self.api_url).netloc == urlsplit(DEFAULT_API_URL).netloc:
            return f"{HOSTED_APP_URL}/jobs/{job_id}"
        base = self.api_url.rstrip("/")
        base = base[: -len("/v1")] if base.endswith("/v1") else base  # the console is not under /v1
        return f"{base}/console/jobs/{job_id}"
