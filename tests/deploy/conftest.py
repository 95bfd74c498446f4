"""Fixtures for the container tests: skip with the reason when docker cannot run here.

In CI (`.ci/run`) docker and debootstrap are installed and the daemon is started, so these run.
"""

from __future__ import annotations

import pytest

from tests.deploy import docker_support


@pytest.fixture(scope="session")
def docker_ready() -> None:
    """Skip the test when no docker daemon can be used (or started) on this machine."""
    reason = docker_support.docker_available()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def base_image(docker_ready: None) -> str:
    """The local Debian bookworm + python3 image (debootstrapped once, cached)."""
    try:
        return docker_support.base_image()
    except docker_support.DockerUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def user_code_image(base_image: str) -> str:
    """deploy/Dockerfile built by `make image` in wheelhouse mode on the local base; its tag."""
    try:
        return docker_support.user_code_image()
    except docker_support.DockerUnavailable as exc:
        pytest.skip(str(exc))
