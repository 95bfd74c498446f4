"""Fixtures for the container tests: skip with the reason when docker cannot run here.

In CI (`.ci/run`) docker and debootstrap are installed and the daemon is started, so these run; CI
also sets `MLOPS_DAGSTER_DOCKER=required`, which turns every such skip into a failure.
"""

from __future__ import annotations

import os

import pytest

from tests.deploy import docker_support


@pytest.fixture(scope="session")
def docker_ready() -> None:
    """Skip the test when no docker daemon can be used (or started) on this machine."""
    reason = docker_support.docker_available()
    if reason and os.environ.get("MLOPS_DAGSTER_DOCKER", "").lower() == "required":
        pytest.fail(f"MLOPS_DAGSTER_DOCKER=required (as in CI), but {reason}")
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def base_image(docker_ready: None) -> str:
    """The local Debian bookworm + python3 image (debootstrapped once, cached)."""
    try:
        return docker_support.base_image()
    except docker_support.DockerUnavailable as exc:
        _skip_unless_required(str(exc))
        raise


@pytest.fixture(scope="session")
def user_code_image(base_image: str) -> str:
    """deploy/Dockerfile built by `make image` in wheelhouse mode on the local base; its tag."""
    try:
        return docker_support.user_code_image()
    except docker_support.DockerUnavailable as exc:
        _skip_unless_required(str(exc))
        raise


def _skip_unless_required(reason: str) -> None:
    if os.environ.get("MLOPS_DAGSTER_DOCKER", "").lower() == "required":
        pytest.fail(f"MLOPS_DAGSTER_DOCKER=required (as in CI), but {reason}")
    pytest.skip(reason)
