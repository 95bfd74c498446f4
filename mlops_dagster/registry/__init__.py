"""The model registry: immutable versions in BentoML's store, gates, cards, and history in Dagster."""

from mlops_dagster.registry.gates import GateDecision, decide
from mlops_dagster.registry.records import VersionRecord, champion_history, current_champion
from mlops_dagster.registry.store import StoredVersion, load_version, save_version

__all__ = [
    "GateDecision",
    "StoredVersion",
    "VersionRecord",
    "champion_history",
    "current_champion",
    "decide",
    "load_version",
    "save_version",
]
