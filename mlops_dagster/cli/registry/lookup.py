"""Reading the registry for the commands: versions by prefix, run tags, the spec's primary metric."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mlops_dagster.cli.errors import CliError
from mlops_dagster.errors import MlopsDagsterError

if TYPE_CHECKING:
    import dagster as dg

    from mlops_dagster.registry.records import VersionRecord

MIN_PREFIX = 8


def resolve(records: Sequence[VersionRecord], name: str, version: str) -> VersionRecord:
    """The record whose version (or sha256) starts with `version`; at least MIN_PREFIX characters."""
    wanted = version.strip().lower()
    if len(wanted) < MIN_PREFIX:
        raise CliError(f"version {version!r} is too short: give at least {MIN_PREFIX} characters of it")
    matches: dict[str, VersionRecord] = {}
    for r in records:
        if r.version.startswith(wanted) or (r.sha256 and r.sha256.startswith(wanted)):
            matches.setdefault(r.version, r)
    if not matches:
        raise CliError(
            f"unknown version {version!r} of pipeline {name!r} "
            f"(see `mlops-dagster registry list {name}` for its versions)"
        )
    if len(matches) > 1:
        raise CliError(
            f"version {version!r} of pipeline {name!r} is ambiguous: it matches "
            f"{', '.join(sorted(matches))}; give more characters"
        )
    return next(iter(matches.values()))


def run_tags(instance: dg.DagsterInstance, run_ids: set[str]) -> dict[str, dict[str, str]]:
    """The tags of each run in `run_ids`, by run id."""
    if not run_ids:
        return {}
    import dagster as dg

    records = instance.get_run_records(dg.RunsFilter(run_ids=sorted(run_ids)))
    return {r.dagster_run.run_id: dict(r.dagster_run.tags) for r in records}


def primary_metric(name: str, records: Sequence[VersionRecord], explicit: str | None) -> str | None:
    """The metric the spec gates on: `--metric`, else the one named in the newest model card."""
    if explicit:
        return explicit
    from mlops_dagster.registry.store import read_card

    for r in records[:3]:
        try:
            metric = read_card(name, r.version).get("metric")
        except (MlopsDagsterError, OSError, ValueError):
            continue
        if metric:
            return str(metric)
    return None
