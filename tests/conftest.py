"""Shared test setup: an isolated DAGSTER_HOME / BENTOML_HOME per session, telemetry off."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="mlops-tests-"))

# Set before anything imports bentoml: its model store location is read once per process.
os.environ.setdefault("BENTOML_HOME", str(_SESSION_HOME / "bentoml"))
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("MLOPS_DEMO_DATA", str(_SESSION_HOME / "demo-data"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def _no_active_environment() -> Iterator[None]:
    """Each test starts with no environment chosen (`build_definitions` chooses one per process)."""
    from mlops_dagster.environments import activate

    activate(None)
    yield
    activate(None)


@pytest.fixture
def project_root() -> Path:
    return ROOT


@pytest.fixture
def storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh DAGSTER_HOME for one test (the Parquet IO manager's default root follows it)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("MLOPS_DEMO_DATA", str(tmp_path / "demo-data"))
    return home


def materialize_range(defs, instance, keys, first: str, last: str, **kwargs):  # type: ignore[no-untyped-def]
    """Materialize partitioned assets for each day in [first, last], one run per partition (as the
    sensors do); returns a stand-in result whose `success` is True only if every run succeeded."""
    from datetime import date, timedelta

    import dagster as dg

    day, end = date.fromisoformat(first), date.fromisoformat(last)
    results = []
    while day <= end:
        results.append(
            dg.materialize(
                list(defs.assets),
                selection=list(keys),
                instance=instance,
                resources=defs.resources,
                partition_key=day.isoformat(),
                **kwargs,
            )
        )
        day += timedelta(days=1)
    return _AllResults(results)


class _AllResults:
    def __init__(self, results):  # type: ignore[no-untyped-def]
        self.results = results
        self.success = all(r.success for r in results)


def materialize_keys(defs, instance, keys, **kwargs):  # type: ignore[no-untyped-def]
    import dagster as dg

    return dg.materialize(
        list(defs.assets), selection=list(keys), instance=instance, resources=defs.resources, **kwargs
    )


@pytest.fixture
def demo_defs(storage: Path):  # type: ignore[no-untyped-def]
    """The demo's definitions, storing under the test's own DAGSTER_HOME."""
    from mlops_dagster import build_definitions

    return build_definitions(ROOT / "pipelines")


@pytest.fixture
def helpers():  # type: ignore[no-untyped-def]
    class Helpers:
        range = staticmethod(materialize_range)
        keys = staticmethod(materialize_keys)

    return Helpers
