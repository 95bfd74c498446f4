"""The installed dagster family belongs together, and the pins that avoid known breakage hold.

An unpinned install can silently pair dagster 1.13.N with dagster-aws / dagster-k8s 0.11.14 (2021):
integration packages 0.X.N belong to dagster 1.(X-16).N.
"""

from __future__ import annotations

from importlib import metadata

import pytest
from packaging.version import Version

DAGSTER = Version(metadata.version("dagster"))
FAMILY = sorted(
    {
        d.metadata["Name"].lower().replace("_", "-")
        for d in metadata.distributions()
        if (d.metadata["Name"] or "").lower().replace("_", "-").startswith("dagster")
    }
)


def expected_version(package: str) -> Version:
    installed = Version(metadata.version(package))
    if installed.major == 1:
        return DAGSTER
    return Version(f"0.{DAGSTER.minor + 16}.{DAGSTER.micro}")


def test_the_family_is_installed():
    assert {
        "dagster",
        "dagster-webserver",
        "dagster-graphql",
        "dagster-pipes",
        "dagster-shared",
        "dagster-postgres",
        "dagster-aws",
        "dagster-k8s",
    } <= set(FAMILY)


@pytest.mark.parametrize("package", FAMILY)
def test_integration_matches_the_dagster_release(package: str):
    assert Version(metadata.version(package)) == expected_version(package), (
        f"{package} {metadata.version(package)} does not belong to dagster {DAGSTER}"
    )


@pytest.mark.parametrize(("package", "below"), [("pandas", "3"), ("protobuf", "7"), ("sqlalchemy", "2.1")])
def test_known_breaking_majors_are_excluded(package: str, below: str):
    assert Version(metadata.version(package)) < Version(below)


def test_lock_file_pins_what_is_installed():
    from pathlib import Path

    lock = Path(__file__).parents[1] / "requirements.lock"
    pins = dict(
        line.split("==", 1)
        for line in lock.read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    for package in ("dagster", "dagster-aws", "dagster-k8s", "pandas", "protobuf", "scikit-learn", "bentoml"):
        name = next(k for k in pins if k.lower().replace("_", "-") == package)
        assert pins[name] == metadata.version(package), package
