"""Every benchmark still runs: each script on tiny inputs, in a subprocess, as `make bench` runs it.

These check that the scripts work (their own agreement checks included, e.g. defs_load's comparison
of the plugin's graph with the hand-written baseline), never how fast anything is. Left out, as they
run for minutes: serving.py (three servers; tests/packaging/test_bento_served.py serves the same
bento), image.py (cold image builds; tests/deploy/test_image.py builds and serves the same image) and
s3_loop.py (the loop with injected faults; tests/e2e/test_s3_faults.py runs the same loop).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL = {
    "defs_load.py": ["--pipelines", "4", "--groups", "4", "--rounds", "1"],
    "drift.py": ["--rows", "2000", "--reference-rows", "1000", "--rounds", "1", "--skip-evidently"],
    "quality.py": ["--rows", "2000", "--rounds", "1"],
    "signing.py": ["--trees", "3", "--rounds", "2"],
    "sensor_tick.py": ["--pipelines", "3", "--rows", "2000", "--history-days", "3", "--history-rows", "500"],
    "performance_sensor.py": ["--pipelines", "2", "--days", "5", "--rounds", "1"],
}


def test_every_benchmark_script_is_covered() -> None:
    long_running = {"__init__.py", "serving.py", "image.py", "s3_loop.py"}
    scripts = {p.name for p in (ROOT / "benchmarks").glob("*.py")} - long_running
    assert scripts <= set(SMALL), f"add a small run of {sorted(scripts - set(SMALL))} here"


@pytest.mark.parametrize("script", sorted(SMALL))
def test_benchmark_runs_on_small_inputs(script: str, tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "BENTOML_HOME": str(tmp_path / "bentoml")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *SMALL[script]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "| " in proc.stdout, f"{script} printed no table:\n{proc.stdout[-2000:]}"
