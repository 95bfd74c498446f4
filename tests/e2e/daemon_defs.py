"""The definitions `tests/e2e/test_daemon_packaging.py` serves to `dagster-daemon run`: the demo's
pipelines with only their packaging sensors (the drift and quality sensors would launch runs of their
own), the sensor's `stuck_after` taken from `MLOPS_TEST_STUCK_AFTER` so a killed run is given up on soon."""

import os
from pathlib import Path

import dagster as dg

from mlops_dagster import build_definitions, load_specs
from mlops_dagster.sensors.packaging import build_packaging_sensor

ROOT = Path(__file__).resolve().parents[2]


def _defs() -> dg.Definitions:
    specs = load_specs(ROOT / "pipelines")
    full = build_definitions(*specs)
    stuck_after = float(os.environ.get("MLOPS_TEST_STUCK_AFTER", "1800"))
    return dg.Definitions(
        assets=full.assets,
        jobs=full.jobs,
        resources=full.resources,
        sensors=[
            build_packaging_sensor(s, minimum_interval_seconds=5, stuck_after=stuck_after)
            for s in specs
            if s.serving.targets
        ],
    )


defs = _defs()
