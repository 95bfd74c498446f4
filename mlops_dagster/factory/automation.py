"""Declarative automation of the live-performance assets, partition by partition.

`<p>/predictions` follows new (and re-materialized) dataset partitions; `<p>/live_performance` follows
its predictions and its feedback. Dagster's `AutomationCondition.eager()` considers only the latest time
partition, but labels arrive days late and datasets are backfilled, so `follows` considers every
partition: it requests one whose upstream partition was updated since it was last requested, once none
of its inputs is missing or being materialized. A champion change updates nothing upstream of these
assets, so it re-predicts no partition: each keeps the version that predicted it.

`<p>__automation_sensor` evaluates the conditions (Dagster's default automation sensor starts stopped;
this one follows the environment's `sensors:` setting, like the pipeline's other sensors).
"""

from collections.abc import Sequence

import dagster as dg

from mlops_dagster.environments import sensor_status
from mlops_dagster.keys import Tags, automation_sensor_name
from mlops_dagster.spec.models import PipelineSpec

TRIGGER = "automation"


def follows(upstream: Sequence[dg.AssetKey]) -> dg.AutomationCondition:
    """True for a partition when one of `upstream` (of its deps) was updated since it was last
    requested, none of its deps is missing, and neither it nor a dep is in progress."""
    names = ", ".join(k.to_user_string() for k in upstream)
    updated = dg.AutomationCondition.any_deps_updated().allow(dg.AssetSelection.assets(*upstream))
    return (
        updated.since_last_handled()
        & ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label(f"follows {names}")


def build_automation_sensor(spec: PipelineSpec, keys: Sequence[dg.AssetKey]) -> dg.SensorDefinition:
    """The sensor that evaluates the automation conditions of `keys` (the pipeline's automated assets)."""
    return dg.AutomationConditionSensorDefinition(
        automation_sensor_name(spec.name),
        target=dg.AssetSelection.assets(*keys),
        run_tags={Tags.PIPELINE: spec.name, Tags.TRIGGER: TRIGGER},
        default_status=sensor_status(spec, dg.DefaultSensorStatus.RUNNING),
        minimum_interval_seconds=30,
        description=(
            f"Batch predictions of `{spec.name}` follow its dataset partitions, and live performance "
            "follows the predictions and the feedback (each partition's automation condition)."
        ),
    )
