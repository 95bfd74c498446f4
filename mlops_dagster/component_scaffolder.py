"""`dg scaffold defs mlops_dagster.MLPipelineComponent <name>`: a defs.yaml that loads and runs as is.

The example is a classification pipeline over a small CSV written next to it (`data/<name>.csv`,
synthetic and deterministic), so `dg check defs` passes and the pipeline can be materialized before
any real data exists. The pipeline is named after the folder.
"""

from __future__ import annotations

import csv
import random
import re
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg

_DEFS_YAML = """\
type: {type_name}

# A pipeline spec (the fields of a pipeline YAML file), plus where its feature groups come from.
attributes:
  name: {name}
  description: Example classification pipeline scaffolded by mlops_dagster; replace the data and model.
  owners: []
  dataset:
    source:                      # exactly one of: uri | sql | python
      uri: data/{name}.csv       # relative to this folder; local path or s3://, .parquet or .csv
      # python: my_project.feeds:load_{name}     (callable(context) -> pandas.DataFrame)
    entity: customer_id
    timestamp: event_time
    label: churned
  quality:
    expectations:
      - {{type: expect_column_values_to_not_be_null, column: customer_id}}
      - {{type: expect_column_values_to_be_between, column: tenure_months, min_value: 0, max_value: 600}}
  features: []                   # feature groups this model consumes
  model:
    task: classification
    estimator: sklearn.linear_model.LogisticRegression
    params: {{max_iter: 200}}
    metric: roc_auc
  gates:
    min: {{roc_auc: 0.6}}
    max_regression: 0.01
  monitoring:
    drift: {{max_drifted_share: 0.3, cooldown: 6h}}
  serving:
    targets: []                  # cloud | edge
  # feature_group_files: [../feature_groups.yaml]   # YAML files with `feature_groups:`
  # define_feature_groups: true  # false in all but one of the components that share a group
"""

_SAMPLE_ROWS = 400


def pipeline_name(target: Path) -> str:
    """The pipeline name for a scaffold target: its folder name made into `[a-z][a-z0-9_]*`."""
    name = re.sub(r"[^a-z0-9_]+", "_", target.name.lower()).strip("_")
    return name if re.match(r"^[a-z]", name) else f"pipeline_{name}".rstrip("_")


def write_sample_data(path: Path, rows: int = _SAMPLE_ROWS, seed: int = 0) -> None:
    """A small churn-like table: customers with more support calls and shorter tenure churn more."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["customer_id", "event_time", "tenure_months", "monthly_charges", "support_calls", "churned"]
        )
        for i in range(rows):
            tenure = rng.randint(1, 72)
            charges = round(rng.uniform(20, 120), 2)
            calls = rng.randint(0, 6)
            risk = 0.9 * calls - 0.05 * tenure + 0.01 * charges + rng.gauss(0, 1)
            when = start + timedelta(hours=6 * i)
            writer.writerow([f"c{i:04d}", when.isoformat(), tenure, charges, calls, int(risk > 0.5)])


class MLPipelineComponentScaffolder(dg.Scaffolder):
    """Writes `defs.yaml` (a working classification example) and its sample data."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        if request.scaffold_format != "yaml":
            dg.scaffold_component(request, {})  # a component.py stub, as for any component
            return
        # With `--append`, target_path is the existing defs.yaml; otherwise the new folder.
        folder = request.target_path.parent if request.append else request.target_path
        name = pipeline_name(folder)
        write_sample_data(folder / "data" / f"{name}.csv")
        text = _DEFS_YAML.format(type_name=request.type_name, name=name)
        if request.append:
            with request.target_path.open("a") as f:
                f.write("---\n" + text)
        else:
            (folder / "defs.yaml").write_text(text)
