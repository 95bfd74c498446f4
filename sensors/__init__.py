"""The demo project's own jobs and sensors (the library's sensors come from mlops_dagster)."""

from sensors.landing import demo_definitions

__all__ = ["demo_definitions"]
