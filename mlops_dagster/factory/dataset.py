"""The `<p>/dataset` asset: read the declared source per partition, check it is usable, store Parquet."""

import hashlib
import warnings
from typing import Any

import dagster as dg
import pandas as pd

from mlops_dagster.factory.keys import dataset_key
from mlops_dagster.factory.metadata import frame_metadata, versioned_output
from mlops_dagster.factory.versions import code_version
from mlops_dagster.io.parquet import content_hash
from mlops_dagster.io.sources import check_dataset, read_source
from mlops_dagster.spec.models import PipelineSpec

IO_MANAGER_KEY = "mlops_io_manager"


def partitions_def(spec: PipelineSpec) -> dg.DailyPartitionsDefinition | None:
    if spec.dataset.partitions is None:
        return None
    daily = spec.dataset.partitions.daily
    return dg.DailyPartitionsDefinition(
        start_date=daily.start.isoformat(),
        end_date=daily.end.isoformat() if daily.end else None,
    )


class PartitionContext:
    """The asset context as seen by a python source for one partition of a multi-partition run."""

    def __init__(self, context: dg.AssetExecutionContext, partition_key: str | None):
        self._context = context
        self.partition_key = partition_key

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def dataset_kinds(spec: PipelineSpec) -> set[str]:
    return {"pandas", "parquet"} | ({"duckdb"} if spec.dataset.source.kind == "sql" else set())


def build_dataset_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    parts = partitions_def(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # backfill_policy: beta, relied on on purpose
        return _dataset_asset(spec, parts)


def _dataset_asset(spec: PipelineSpec, parts: dg.DailyPartitionsDefinition | None) -> dg.AssetsDefinition:
    source = spec.dataset.source

    @dg.asset(
        key=dataset_key(spec.name),
        group_name=spec.name,
        description=f"Raw dataset of `{spec.name}` from its {source.kind} source. {spec.description}".strip(),
        kinds=dataset_kinds(spec),
        owners=list(spec.owners),
        code_version=code_version(spec.dataset, code=(source.python,) if source.python else ()),
        partitions_def=parts,
        backfill_policy=dg.BackfillPolicy.single_run() if parts else None,
        io_manager_key=IO_MANAGER_KEY,
        metadata={"mlops/pipeline": spec.name, "mlops/source": source.model_dump(exclude_none=True)},
    )
    def _dataset(context: dg.AssetExecutionContext) -> dg.Output[Any]:
        keys: list[str | None] = list(context.partition_keys) if parts else [None]
        frames: dict[str | None, pd.DataFrame] = {}
        for key in keys:
            raw = read_source(spec, PartitionContext(context, key), key)
            frames[key] = check_dataset(spec, raw, key)
        combined = frames[keys[0]] if len(keys) == 1 else pd.concat(frames.values(), ignore_index=True)
        metadata = frame_metadata(combined)
        if len(keys) > 1:
            metadata["mlops/partitions"] = dg.MetadataValue.int(len(keys))
            # One data version for the range: Output carries a single version for all its partitions.
            digest = hashlib.sha256("".join(content_hash(f) for f in frames.values()).encode()).hexdigest()
            return versioned_output(frames, metadata, digest)
        return versioned_output(frames[keys[0]], metadata, content_hash(combined))

    return _dataset
