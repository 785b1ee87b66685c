"""``SutroResource``: the Dagster resource that hands out configured Sutro core clients.

Example:
    >>> from dagster import Definitions, EnvVar
    >>> from dagster_sutro import SutroResource
    >>> defs = Definitions(resources={"sutro": SutroResource(api_key=EnvVar("SUTRO_API_KEY"))})
"""

from __future__ import annotations

import asyncio
import logging

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from sutro_core import AsyncSutroClient, PollPolicy, SutroClient
from sutro_core.retrying import poll_policy
from sutro_core.spec import DEFAULT_TIMEOUT_S

logger = logging.getLogger(__name__)


class SutroResource(ConfigurableResource):
    """Connection and waiting settings for Sutro, shared by every Sutro asset in a code location.

    The resource gives the core's sync client (``get_client``) and async client
    (``get_async_client``); both are closed when the run's resources are torn down.
    The asset factories in :mod:`dagster_sutro.assets` use it; you can also call the client
    directly from your own assets.

    Example:
        >>> from dagster import AssetExecutionContext, EnvVar, asset
        >>> @asset
        ... def quotas(context: AssetExecutionContext, sutro: SutroResource) -> list:
        ...     return [q.model_dump() for q in sutro.get_client().get_quotas()]
        >>> resource = SutroResource(api_key=EnvVar("SUTRO_API_KEY"), timeout_seconds=3600)
    """

    api_key: str | None = Field(
        default=None,
        description="Sutro API key. Use EnvVar('SUTRO_API_KEY'); when unset the core reads "
        "SUTRO_API_KEY or ~/.sutro/config.json.",
    )
    api_url: str | None = Field(
        default=None,
        description="Base URL of the Sutro API (default: SUTRO_API_URL, then https://api.sutro.sh). "
        "Point it at a sutro-local server for development.",
    )
    timeout_seconds: float = Field(
        default=DEFAULT_TIMEOUT_S,
        gt=0,
        description="How long a step waits for its job. At the deadline the job is cancelled (unless "
        "cancel_on_timeout=False) and the step fails, as in Airflow and Prefect.",
    )
    poll_interval_seconds: float | None = Field(
        default=None,
        gt=0,
        description="First polling interval while waiting (the core backs off from there). "
        "None keeps the core's default.",
    )
    max_poll_interval_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Upper bound of the polling interval. None keeps the core's default.",
    )
    cancel_on_timeout: bool = Field(
        default=True,
        description="Cancel the Sutro job when a step's wait reaches timeout_seconds. Set False to keep it "
        "running, so a RetryPolicy retry of the step reattaches to it instead.",
    )
    results_dir: str | None = Field(
        default=None,
        description="Where the core writes each step's results artifact before the IO manager stores it "
        "(local folder or fsspec URI). Default: $DAGSTER_HOME/storage/sutro.",
    )
    cancel_on_termination: bool = Field(
        default=True,
        description="Cancel the Sutro job when the Dagster run is terminated. Set False to let "
        "jobs finish (a re-execution then reattaches to them).",
    )

    _client: SutroClient | None = PrivateAttr(default=None)
    _async_client: AsyncSutroClient | None = PrivateAttr(default=None)

    def teardown_after_execution(self, context: InitResourceContext) -> None:  # noqa: ARG002
        """Close the clients opened during the run."""
        self.close()

    def get_client(self) -> SutroClient:
        """The synchronous core client, created once per resource instance.

        Example:
            >>> job = sutro.get_client().get_job("job-123")  # doctest: +SKIP
        """
        if self._client is None:
            self._client = SutroClient(api_key=self.api_key, api_url=self.api_url, poll=self.poll_policy())
        return self._client

    def get_async_client(self) -> AsyncSutroClient:
        """The asynchronous core client, for ``async def`` assets.

        Example:
            >>> job = await sutro.get_async_client().get_job("job-123")  # doctest: +SKIP
        """
        if self._async_client is None:
            self._async_client = AsyncSutroClient(api_key=self.api_key, api_url=self.api_url, poll=self.poll_policy())
        return self._async_client

    def poll_policy(self) -> PollPolicy:
        """The core's polling policy with this resource's overrides.

        Example:
            >>> SutroResource(poll_interval_seconds=2.0).poll_policy().initial_interval
            2.0
        """
        return poll_policy(self.poll_interval_seconds, self.max_poll_interval_seconds)

    def close(self) -> None:
        """Close any client this resource opened (safe to call twice)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
        aclient, self._async_client = self._async_client, None
        if aclient is not None:
            try:
                asyncio.run(aclient.aclose())
            except RuntimeError as exc:
                # Inside a running loop (or a loop-bound transport) we cannot close here; the
                # connections are released when the process ends.
                logger.debug("could not close the async Sutro client at teardown: %s", exc)
