"""A local S3 for tests: moto's threaded server on 127.0.0.1, reached by s3fs through AWS_* variables.

moto answers in process and makes no network call; the AWS variables are set with the test's
`monkeypatch`, so they end with the test. fsspec caches file-system instances (and the endpoint they
were made with) per process, so the cache is cleared on both sides of each test.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@contextmanager
def moto_server() -> Iterator[str]:
    """Run moto's S3 server on a free local port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@dataclass
class LocalS3:
    endpoint: str
    client: Any  # a boto3 S3 client on the moto server

    def new_bucket(self) -> str:
        name = f"mlops-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name

    def buckets(self) -> set[str]:
        return {b["Name"] for b in self.client.list_buckets()["Buckets"]}

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _clear_fs_cache() -> None:
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@contextmanager
def local_s3(endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[LocalS3]:
    """Point boto3 / s3fs at `endpoint` with test credentials, for the duration of one test."""
    import boto3

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    _clear_fs_cache()
    try:
        yield LocalS3(endpoint, boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1"))
    finally:
        _clear_fs_cache()
