"""A real S3-compatible endpoint for tests: moto's server mode as a subprocess over HTTP on loopback.

Not moto's in-process mock or ``ThreadedMotoServer``: the code under test talks HTTP to another process,
exactly as it would to AWS or MinIO; only the endpoint URL differs. The server runs in its own process
group, is told by the kernel to die with its parent (PR_SET_PDEATHSIG, Linux), and is killed with its
group on ``stop()`` (also registered with ``atexit``), so no process or port outlives the test run.

Moto accepts any credentials; ``secret_key`` is a recognisable random string per server, so tests can grep
logs, errors and artifacts for it.

Example:
    >>> with S3TestServer() as s3:                                   # doctest: +SKIP
    ...     bucket = s3.create_bucket()
    ...     fs = s3fs.S3FileSystem(**s3.storage_options)
    ...     subprocess.run([...], env={**os.environ, **s3.env})       # a child sees only the AWS standard env
"""

from __future__ import annotations

import atexit
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

# Runs moto's server in a fresh interpreter that first asks the kernel to SIGKILL it when its parent dies
# (PR_SET_PDEATHSIG = 1; Linux only; elsewhere the process-group kill on stop still applies). Done after
# exec rather than in a preexec_fn, which is unsafe in a process with threads.
_BOOTSTRAP = """
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)  # the parent is already gone
from moto.server import main
main(sys.argv[2:])
"""

# Variables that would point a child at another endpoint, profile or credential source than ours.
_AWS_VARS_TO_DROP = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                     "AWS_ENDPOINT_URL_S3", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class S3TestServer:
    """``python -m moto.server`` on a free loopback port; a context manager.

    Attributes: ``endpoint_url``, ``region``, ``access_key``, ``secret_key``, ``env`` (the standard AWS
    variables a subprocess needs), ``storage_options`` (fsspec/s3fs). ``create_bucket()``, ``client()``
    (boto3), ``keys(bucket)``, ``unfinished_uploads(bucket)``, ``stop()``.
    """

    def __init__(self, startup_timeout: float = 60.0, region: str = "us-east-1") -> None:
        self.startup_timeout = startup_timeout
        self.region = region
        self.access_key = "sutro-test-key-" + secrets.token_hex(4)
        # Recognisable and random: a test greps logs, errors and artifacts for it.
        self.secret_key = "SUTRO-TEST-SECRET-" + secrets.token_hex(8)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_path = Path(tempfile.gettempdir()) / f"sutro-moto-{os.getpid()}-{uuid.uuid4().hex[:8]}.log"
        self._client: Any = None

    @property
    def endpoint_url(self) -> str:
        """e.g. ``http://127.0.0.1:51234``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS environment for a subprocess: endpoint, keys, region (nothing of ours).

        Merge it over ``os.environ``; ``env_without`` lists the variables to drop from the parent's.
        """
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",  # never wait on the instance-metadata service
        }

    def child_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default ``os.environ``) without stray AWS profile/endpoint variables, plus ``env``."""
        out = {k: v for k, v in (os.environ if base is None else base).items() if k not in _AWS_VARS_TO_DROP}
        return {**out, **self.env}

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options for this endpoint: ``s3fs.S3FileSystem(**storage_options)``."""
        return {
            "key": self.access_key,
            "secret": self.secret_key,
            "endpoint_url": self.endpoint_url,
            "client_kwargs": {"region_name": self.region},
        }

    def start(self) -> S3TestServer:
        """Start moto's server and wait until it answers HTTP (a new port if the chosen one was taken)."""
        deadline = time.monotonic() + self.startup_timeout
        atexit.register(self.stop)
        for _ in range(5):
            self.port = _free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
            log = open(self._log_path, "ab")  # noqa: SIM115 - the child owns it; removed on stop
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOTSTRAP, str(os.getpid()), "--host", "127.0.0.1", "--port", str(self.port)],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
            log.close()
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    self.proc = None  # reaped by poll(); most likely the port was taken meanwhile: try another
                    break
                try:
                    httpx.get(f"{self.endpoint_url}/moto-api/", timeout=2)
                    return self  # any HTTP answer: the server is up
                except httpx.HTTPError:
                    time.sleep(0.1)
            else:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"moto's S3 server did not answer within {self.startup_timeout} s:\n{tail}")
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"moto's S3 server did not start:\n{tail}")

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's log (for failure messages)."""
        try:
            return self._log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def client(self) -> Any:
        """A boto3 S3 client for this endpoint (for checks independent of the code under test)."""
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "s3", endpoint_url=self.endpoint_url, region_name=self.region,
                aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            )
        return self._client

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh unique name when not given) and return its name."""
        name = name or f"sutro-test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key in ``bucket`` under ``prefix``, sorted."""
        out: list[str] = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out += [obj["Key"] for obj in page.get("Contents", [])]
        return sorted(out)

    def unfinished_uploads(self, bucket: str, prefix: str = "") -> list[dict[str, Any]]:
        """Multipart uploads started and neither completed nor aborted (``Key``, ``UploadId``, ...)."""
        return list(self.client().list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", []))

    def delete_bucket(self, bucket: str) -> None:
        """Abort its unfinished uploads, delete its objects and the bucket (frees the server's memory)."""
        s3 = self.client()
        for upload in self.unfinished_uploads(bucket):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        keys = self.keys(bucket)
        for i in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]]})
        s3.delete_bucket(Bucket=bucket)

    def stop(self) -> None:
        """Kill the server's process group, reap it and remove its log. Safe to call twice."""
        proc, self.proc = self.proc, None
        if self._client is not None:
            self._client.close()
            self._client = None
        if proc is not None:
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            try:  # anything else left in the group
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self._log_path.unlink(missing_ok=True)

    def __enter__(self) -> S3TestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class S3Bucket:
    """A bucket on an ``S3TestServer``: ``name``, ``uri(key)``, ``keys()``, ``unfinished_uploads()``."""

    name: str
    server: S3TestServer

    def uri(self, key: str = "") -> str:
        """``s3://<bucket>/<key>``."""
        return f"s3://{self.name}/{key.lstrip('/')}"

    def keys(self, prefix: str = "") -> list[str]:
        """Object keys in the bucket under ``prefix`` (through boto3, not the code under test)."""
        return self.server.keys(self.name, prefix)

    def unfinished_uploads(self, prefix: str = "") -> list[dict[str, Any]]:
        """Multipart uploads in the bucket neither completed nor aborted."""
        return self.server.unfinished_uploads(self.name, prefix)

    def read(self, key: str) -> bytes:
        """The object's bytes (through boto3)."""
        return self.server.client().get_object(Bucket=self.name, Key=key.lstrip("/"))["Body"].read()
