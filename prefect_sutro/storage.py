"""Object-storage credentials the Prefect way: secrets as ``Secret`` blocks or ``SecretStr``, never plain text in
what Prefect stores.

Results go to any fsspec URI (``s3://bucket/out.parquet``). With no ``storage_options`` the filesystem's own
chain applies: for S3 the standard AWS environment of the worker (``AWS_ACCESS_KEY_ID``, ...,
``AWS_ENDPOINT_URL``; set them in the work pool's job variables) or its instance role. ``storage_options``
(s3fs's names: ``key``, ``secret``, ``endpoint_url``, ``client_kwargs``) may hold secrets as a Prefect
``Secret`` block (``Secret.load("s3-secret")``) or a ``pydantic.SecretStr``: Prefect stores a flow run's
parameters and shows them in the UI, masking only those. A plain-text secret given to a flow is refused.

Example:
    >>> from prefect.blocks.system import Secret
    >>> options = {"key": "AKIA...", "secret": Secret.load("s3-secret")}              # doctest: +SKIP
    >>> await sutro_batch_job(rows, "s3://bucket/out.parquet", creds, model="...", storage_options=options)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sutro_core import InputValidationError

#: Parts of option names that hold secrets (s3fs, gcsfs, adlfs, botocore).
_SECRET_WORDS = ("secret", "token", "password", "credential", "account_key", "sas")


def _is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def check_storage_options(options: Mapping[str, Any] | None, field: str = "storage_options") -> None:
    """Refuse plain-text secrets (Prefect would store and show them with the flow run's parameters).

    Example:
        >>> check_storage_options({"key": "AKIA", "endpoint_url": "http://127.0.0.1:9000"})
        >>> check_storage_options({"secret": "hunter2"})
        Traceback (most recent call last):
        ...
        sutro_core.errors.InputValidationError: storage_options: 'secret' is plain text, ...
    """
    if options is None:
        return
    if not isinstance(options, Mapping):
        raise InputValidationError(field, f"must be a dict of fsspec options, got {type(options).__name__}")
    for name, value in options.items():
        if isinstance(value, Mapping):
            check_storage_options(value, field)
        elif isinstance(value, str) and value and _is_secret_name(str(name)):
            raise InputValidationError(
                field, f"{name!r} is plain text, and Prefect stores a flow run's parameters (the UI shows them): "
                "pass it as a Secret block (Secret.load('my-s3-secret')) or pydantic.SecretStr(...), or leave "
                "storage_options out and give the worker the standard AWS environment")


def resolve_storage_options(options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The options with ``Secret`` blocks read (``.get()``); ``SecretStr`` stays wrapped until the core builds
    the filesystem. None for none.

    Example:
        >>> resolve_storage_options({"endpoint_url": "http://127.0.0.1:9000"})
        {'endpoint_url': 'http://127.0.0.1:9000'}
    """
    if not options:
        return None

    def read(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: read(v) for k, v in value.items()}
        if type(value).__name__ == "Secret" and hasattr(value, "get") and hasattr(value, "value"):
            from pydantic import SecretStr

            secret = value.get()
            return SecretStr(secret) if isinstance(secret, str) else secret
        return value

    return {k: read(v) for k, v in options.items()}


def masked(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with every plain-text secret replaced by ``"**********"`` (as Prefect shows a SecretStr).

    Example:
        >>> masked({"key": "AKIA", "secret": "hunter2"})
        {'key': 'AKIA', 'secret': '**********'}
    """
    return {k: masked(v) if isinstance(v, Mapping)
            else "**********" if isinstance(v, str) and v and _is_secret_name(str(k)) else v
            for k, v in options.items()}
