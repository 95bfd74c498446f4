"""Feature groups: running transforms under their access rules, and point-in-time joins."""

from mlops_dagster.features.groups import feature_columns, run_transform
from mlops_dagster.features.pit import point_in_time_join

__all__ = ["feature_columns", "point_in_time_join", "run_transform"]
