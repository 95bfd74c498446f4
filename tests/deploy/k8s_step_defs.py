"""The demo code location plus one job whose steps run as their own Kubernetes Jobs.

Served by the user-code image's gRPC server in `test_k8s_launch.py` (the file reaches the container
through a ConfigMap volume, with the image's `/opt/dagster/app` as working directory, so `definitions`
is the image's own demo). `churn__dataset_on_k8s` materializes one partition of `churn/dataset` with
`k8s_job_executor`: the run worker posts one step Job, sized by that asset's op tags (the spec's
`compute:`), instead of running the step in its own process.
"""

import dagster as dg
from dagster_k8s import k8s_job_executor

import definitions  # the module, not its `defs`: one Definitions object at module scope

STEP_JOB = "churn__dataset_on_k8s"

dataset_on_k8s = dg.define_asset_job(
    STEP_JOB,
    selection=dg.AssetSelection.assets(dg.AssetKey(["churn", "dataset"])),
    executor_def=k8s_job_executor,
    description="One partition of churn/dataset, its step in its own Kubernetes Job",
)

defs = dg.Definitions.merge(definitions.defs, dg.Definitions(jobs=[dataset_on_k8s]))
