"""The S3 test endpoint itself: a real moto server process over HTTP that leaves nothing behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from support.s3_server import S3TestServer


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_server_is_a_separate_process_speaking_s3_over_http_and_stop_reaps_it():
    server = S3TestServer().start()
    try:
        assert server.proc is not None and server.proc.pid != os.getpid()
        assert _port_open(server.port)
        bucket = server.create_bucket()
        # A child process that only has the standard AWS environment sees the same bucket.
        code = "import boto3; print(sorted(b['Name'] for b in boto3.client('s3').list_buckets()['Buckets']))"
        out = subprocess.run([sys.executable, "-c", code], env=server.child_env(), capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert bucket in out.stdout
        proc, port = server.proc, server.port
    finally:
        server.stop()
    assert proc.poll() is not None  # reaped, not a zombie left to init
    assert not _port_open(port)
    server.stop()  # twice is fine


def test_bucket_fixture_gives_each_test_an_empty_bucket(s3_bucket):
    assert s3_bucket.keys() == []
    s3_bucket.server.client().put_object(Bucket=s3_bucket.name, Key="a/b.txt", Body=b"x")
    assert s3_bucket.keys("a/") == ["a/b.txt"]
    assert s3_bucket.read("a/b.txt") == b"x"
    assert s3_bucket.uri("a/b.txt") == f"s3://{s3_bucket.name}/a/b.txt"


@pytest.mark.parametrize("attempt", [1, 2])
def test_storage_options_reach_the_endpoint_through_s3fs(s3_bucket, attempt):
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_bucket.server.storage_options)
    fs.pipe(f"{s3_bucket.name}/k{attempt}", b"hello")
    assert s3_bucket.keys() == [f"k{attempt}"]  # and the previous test's bucket is not this one
