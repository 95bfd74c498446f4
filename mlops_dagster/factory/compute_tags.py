"""`compute:` as the tags Dagster's own launchers and executors read (CONTRACT section 6).

- `dagster-k8s/config`: `K8sRunLauncher` reads it from the run's tags (the whole run's pod),
  `k8s_job_executor` from each step's op tags (one pod per step). Requests carry cpu and memory;
  limits carry memory (a pod over it is killed, not throttled) and the gpu as `nvidia.com/gpu`.
- `ecs/cpu` (1024 units per core) and `ecs/memory` (MiB): read the same way by `EcsRunLauncher` and
  `ecs_executor`.

So a pipeline's training can ask for its own large pod or task while the rest stays small. The retrain
job's run tags are the largest request among its assets, for launchers that run a job in one pod.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from mlops_dagster.spec.compute import ComputeSpec, compute_for, cpu_cores, memory_bytes
from mlops_dagster.spec.models import PipelineSpec

K8S_CONFIG_TAG = "dagster-k8s/config"
ECS_CPU_TAG = "ecs/cpu"
ECS_MEMORY_TAG = "ecs/memory"
GPU_RESOURCE = "nvidia.com/gpu"


def compute_tags(compute: ComputeSpec | None) -> dict[str, Any]:
    """The Kubernetes and ECS tags for one step's settings; empty when nothing is asked for."""
    if compute is None or compute.empty:
        return {}
    requests: dict[str, str] = {}
    limits: dict[str, Any] = {}
    tags: dict[str, Any] = {}
    if compute.cpu is not None:
        requests["cpu"] = compute.cpu
        tags[ECS_CPU_TAG] = str(math.ceil(cpu_cores(compute.cpu) * 1024))
    if compute.memory is not None:
        requests["memory"] = compute.memory
        limits["memory"] = compute.memory
        tags[ECS_MEMORY_TAG] = str(math.ceil(memory_bytes(compute.memory) / 2**20))
    if compute.gpu is not None:
        limits[GPU_RESOURCE] = compute.gpu
    resources = {k: v for k, v in (("requests", requests), ("limits", limits)) if v}
    tags[K8S_CONFIG_TAG] = {"container_config": {"resources": resources}}
    return tags


def asset_op_tags(spec: PipelineSpec, asset: str) -> dict[str, Any]:
    """The op tags of pipeline asset `asset` (a short name such as `candidate`)."""
    return compute_tags(compute_for(spec.compute, asset))


def largest(computes: Iterable[ComputeSpec | None]) -> ComputeSpec | None:
    """Field by field, the largest of several settings (what one pod running them all needs)."""
    given = [c for c in computes if c is not None and not c.empty]
    if not given:
        return None
    cpus = [c.cpu for c in given if c.cpu is not None]
    memories = [c.memory for c in given if c.memory is not None]
    gpus = [c.gpu for c in given if c.gpu is not None]
    return ComputeSpec(
        cpu=max(cpus, key=cpu_cores) if cpus else None,
        memory=max(memories, key=memory_bytes) if memories else None,
        gpu=max(gpus) if gpus else None,
    )


def job_tags(spec: PipelineSpec, assets: Iterable[str]) -> dict[str, Any]:
    """Run tags for a job over `assets` of the pipeline: the largest of their settings."""
    return compute_tags(largest(compute_for(spec.compute, a) for a in assets))
