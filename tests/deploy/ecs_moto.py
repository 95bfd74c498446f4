"""A local ECS for tests: moto's server on 127.0.0.1 behind a recording proxy, as a launcher sees AWS.

boto3 in the launcher (in the test process and in the `dagster job launch` subprocess) reaches the
proxy through `AWS_ENDPOINT_URL`; the proxy forwards every request to moto unchanged and keeps the
JSON body of each ECS call, so a test asserts on the RunTask request exactly as the launcher sent
it (not on moto's reading of it).
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.s3_server import moto_server

REGION = "us-east-1"
ECS_TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113."
# Headers the proxy sets itself (hop by hop, or about the connection it opens to moto).
_NOT_FORWARDED = {"host", "connection", "keep-alive", "transfer-encoding", "proxy-connection"}


@dataclass(frozen=True)
class EcsCall:
    """One ECS API call as the client sent it: the action (`RunTask`) and its JSON request."""

    action: str
    request: dict[str, Any]


@dataclass
class RecordingProxy:
    """Forwards HTTP to `upstream` and records the ECS calls that pass through."""

    upstream: str
    calls: list[EcsCall] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, target: str, body: bytes) -> None:
        if target.startswith(ECS_TARGET_PREFIX):
            call = EcsCall(target.removeprefix(ECS_TARGET_PREFIX), json.loads(body or b"{}"))
            with self._lock:
                self.calls.append(call)

    def ecs_calls(self, action: str) -> list[EcsCall]:
        """The recorded calls of one ECS action, in order."""
        with self._lock:
            return [c for c in self.calls if c.action == action]


def _handler(proxy: RecordingProxy) -> type[BaseHTTPRequestHandler]:
    upstream = urlsplit(proxy.upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            proxy.record(self.headers.get("X-Amz-Target", ""), body)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _NOT_FORWARDED}
            conn = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port, timeout=60)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
            finally:
                conn.close()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in _NOT_FORWARDED and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base signature
            pass

    return Handler


@contextmanager
def recording_moto() -> Iterator[tuple[str, RecordingProxy]]:
    """moto's server and a recording proxy in front of it; yields (proxy endpoint URL, proxy)."""
    with moto_server() as upstream:
        proxy = RecordingProxy(upstream)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
        thread = threading.Thread(target=server.serve_forever, name="ecs-recording-proxy", daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}", proxy
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)


def aws_environment(endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Point every boto3 client of this test (and of its subprocesses) at `endpoint` with fake
    credentials; returns the variables set."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@dataclass(frozen=True)
class EcsTarget:
    """What the tests register in moto before the launcher runs: a cluster, a subnet and security
    group for awsvpc, and a Fargate task definition whose one container runs the user-code image."""

    cluster: str
    subnet: str
    security_group: str
    family: str
    container: str
    task_definition_arn: str
    image: str
    environment: dict[str, str]

    def run_task_kwargs(self) -> dict[str, Any]:
        """The launcher's `run_task_kwargs`: where and how the run's task starts."""
        return {
            "cluster": self.cluster,
            "launchType": "FARGATE",
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": [self.subnet],
                    "securityGroups": [self.security_group],
                    "assignPublicIp": "DISABLED",
                }
            },
        }


def create_ecs_target(
    endpoint: str, image: str, environment: dict[str, str], *, family: str = "mlops-user-code"
) -> EcsTarget:
    """Register a cluster, network and Fargate task definition (container `user-code`) in moto."""
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name=REGION)
    ecs = boto3.client("ecs", endpoint_url=endpoint, region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    # moto 5.2.5: RunTask with awsvpc fails with a 500 (`NetworkInterface` has no `private_dns_name`)
    # unless the VPC has DNS hostnames on. AWS needs no such thing; the default VPC has it on anyway.
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="mlops-runs", Description="Dagster runs", VpcId=vpc)
    cluster = ecs.create_cluster(clusterName="mlops")["cluster"]["clusterName"]
    container = "user-code"
    definition = ecs.register_task_definition(
        family=family,
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        # Fargate sizes the task, not the container: the run's `ecs/cpu` / `ecs/memory` override these.
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": container,
                "image": image,
                "essential": True,
                "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
                # moto 5.2.5: RunTask adds up container memory and fails with a 500 (TypeError) when a
                # Fargate container has neither `memory` nor `memoryReservation`, which AWS accepts. A
                # soft reservation satisfies moto without capping the container (no hard `memory`).
                "memoryReservation": 256,
            }
        ],
    )["taskDefinition"]
    return EcsTarget(
        cluster=cluster,
        subnet=subnet,
        security_group=group["GroupId"],
        family=family,
        container=container,
        task_definition_arn=definition["taskDefinitionArn"],
        image=image,
        environment=dict(environment),
    )
