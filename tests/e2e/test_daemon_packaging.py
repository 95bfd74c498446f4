"""Packaging follows the champion through `dagster-daemon run`, the way `make dev` runs the sensors:
after a promote and a rollback by hand, and after a retrain killed (kill -9) between the champion's
materialization and its packaging. The test polls the instance; it never times anything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from mlops_dagster.registry import records
from mlops_dagster.sensors.packaging import packaged_version

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
K = dg.AssetKey
PACKAGING = [K(["churn", "bento"]), K(["churn", "edge_bundle"])]
PATIENCE = 900.0  # seconds; generous: the daemon's runs build bentos on a loaded machine

CRASHING_RETRAIN = textwrap.dedent(
    """
    import time
    import dagster as dg
    from mlops_dagster.factory import packaging
    from mlops_dagster.packaging import bento
    from tests.e2e.daemon_defs import defs

    def hang(*args, **kwargs):
        print("packaging started", flush=True)
        time.sleep(3600)

    bento.build_bento = hang
    packaging._publish_edge_folder = hang
    with dg.DagsterInstance.get() as instance:
        defs.resolve_job_def("churn__retrain").execute_in_process(instance=instance)
    """
)


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": str(ROOT),
        "MLOPS_TEST_STUCK_AFTER": "30",  # a packaging run slower than this only gets a harmless twin
        "BENTOML_DO_NOT_TRACK": "true",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "false",
    }


def _wait_until(what: str, condition: Any, daemon: tuple[subprocess.Popen[Any], Path]) -> None:
    proc, log = daemon
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            pytest.fail(f"the daemon exited while waiting for {what}: {log.read_text()[-3000:]}")
        time.sleep(2)
    pytest.fail(f"gave up waiting for {what} after {PATIENCE:.0f} s: {log.read_text()[-3000:]}")


def _packaged_at(instance: dg.DagsterInstance, version: str) -> bool:
    return all(packaged_version(instance, key) == version for key in PACKAGING)


@pytest.fixture
def daemon(storage: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        f"  - python_file:\n      relative_path: {ROOT / 'tests' / 'e2e' / 'daemon_defs.py'}\n"
        f"      working_directory: {ROOT}\n"
    )
    log = tmp_path / "daemon.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)],
            cwd=ROOT,
            env=_env(storage),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        yield proc, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _champion(defs: dg.Definitions, instance: dg.DagsterInstance, **config: object) -> None:
    result = dg.materialize(
        list(defs.assets),
        selection=[K(["churn", "champion"])],
        instance=instance,
        resources=defs.resources,
        run_config={"ops": {"churn__champion": {"config": config}}},
        tags={"mlops/trigger": "cli", "mlops/pipeline": "churn"},
    )
    assert result.success


def test_the_daemon_packages_every_champion(storage, helpers, daemon):  # type: ignore[no-untyped-def]
    from tests.e2e.daemon_defs import defs

    with dg.DagsterInstance.get() as instance:
        assert helpers.range(defs, instance, [K(["churn", "dataset"])], "2026-01-01", "2026-01-08").success
        assert defs.resolve_job_def("churn__retrain").execute_in_process(instance=instance).success
        first = records.current_champion(instance, "churn")
        assert _packaged_at(instance, first.version)

        # (a) A promote by hand: a run of the champion alone; the daemon packages the new version.
        assert helpers.range(defs, instance, [K(["churn", "dataset"])], "2026-01-09", "2026-01-16").success
        assert helpers.keys(defs, instance, [K(["churn", "training_set"]), K(["churn", "candidate"])]).success
        second = records.latest_candidate(instance, "churn")
        _champion(defs, instance, action="promote", version=second.version)
        _wait_until(f"packaging of {second.version}", lambda: _packaged_at(instance, second.version), daemon)
        runs = instance.get_runs(dg.RunsFilter(tags={"mlops/champion_version": second.version}))
        assert runs and runs[0].tags["mlops/trigger"] == "champion"

        # ... and a rollback by hand.
        _champion(defs, instance, action="rollback")
        assert records.current_champion(instance, "churn").version == first.version
        _wait_until(f"packaging of {first.version}", lambda: _packaged_at(instance, first.version), daemon)

        # (b) A retrain killed right after its champion materialization, before any packaging: the
        # run stays STARTED forever; the daemon still packages the new champion.
        crash = subprocess.Popen(
            [sys.executable, "-c", CRASHING_RETRAIN],
            cwd=ROOT,
            env=_env(storage),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert crash.stdout is not None
            line = crash.stdout.readline()  # blocks until a packaging step starts (or the process ends)
            assert line.strip() == "packaging started", "the retrain ended before its packaging"
            os.kill(crash.pid, signal.SIGKILL)
        finally:
            if crash.poll() is None:
                crash.kill()
            crash.wait()
        champion = records.current_champion(instance, "churn")
        assert champion.version != first.version  # the killed retrain promoted a new champion...
        killed = instance.get_run_by_id(champion.run_id)
        assert killed is not None and killed.job_name == "churn__retrain"
        assert killed.status == dg.DagsterRunStatus.STARTED  # ...and is left STARTED forever
        version = champion.version
        assert not _packaged_at(instance, version)
        _wait_until(f"packaging of {version} (crash)", lambda: _packaged_at(instance, version), daemon)
