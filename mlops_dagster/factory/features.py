"""The `features/<g>` asset: one per feature group, shared by every consumer pipeline."""

import dagster as dg
import pandas as pd

from mlops_dagster.factory.dataset import IO_MANAGER_KEY
from mlops_dagster.factory.keys import FEATURES_GROUP, dataset_key, feature_key
from mlops_dagster.factory.metadata import frame_metadata, versioned_output
from mlops_dagster.factory.versions import code_version
from mlops_dagster.features.groups import run_transform
from mlops_dagster.io.parquet import content_hash
from mlops_dagster.spec.models import FeatureGroupSpec


def build_feature_asset(group: FeatureGroupSpec) -> dg.AssetsDefinition:
    ins = {f"{p}_dataset": dg.AssetIn(key=dataset_key(p)) for p in group.inputs}
    consumers = ", ".join(f"`{c}`" for c in group.consumers) or "none"

    @dg.asset(
        key=feature_key(group.name),
        group_name=FEATURES_GROUP,
        description=(
            f"{group.description}\n\nInputs: {', '.join(group.inputs)}. Consumers: {consumers}. "
            f"PII (hashed): {', '.join(group.pii) or 'none'}."
        ).strip(),
        kinds={"pandas", "parquet"},
        owners=list(group.owners),
        ins=ins,
        code_version=code_version(
            group.model_dump(exclude={"quality", "description", "owners"}), code=(group.transform,)
        ),
        io_manager_key=IO_MANAGER_KEY,
        metadata={"mlops/consumers": list(group.consumers), "mlops/pii": list(group.pii)},
    )
    def _feature_group(context: dg.AssetExecutionContext, **inputs: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        frames = [inputs[name] for name in ins]
        source = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        out = run_transform(group, source)
        return versioned_output(out, frame_metadata(out), content_hash(out))

    return _feature_group
