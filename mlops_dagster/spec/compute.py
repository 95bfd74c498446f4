"""`compute:`: the cpu, memory and gpu an asset's step asks for, as Kubernetes quantities.

A pipeline's `compute:` maps an asset's short name (`dataset`, `training_set`, `candidate`, `champion`,
`bento`, `edge_bundle`, `drift_report`) or `default` to `{cpu: "2", memory: 4Gi, gpu: 1}`; an
environment's `compute:` overrides it per asset. `factory/compute_tags.py` turns the result into the
tags Dagster's launchers and executors read: `dagster-k8s/config` for Kubernetes, `ecs/cpu` and
`ecs/memory` for ECS.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import Field, field_validator

from mlops_dagster.spec.base import StrictModel

ASSET_NAMES = (
    "dataset",
    "training_set",
    "candidate",
    "champion",
    "bento",
    "edge_bundle",
    "drift_report",
    "predictions",
    "feedback",
    "live_performance",
)
COMPUTE_KEYS = ("default", *ASSET_NAMES)

_CPU = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_MEMORY_FACTOR = {
    None: 1,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip
MAX_CPU = Decimal(1024)  # cores; more is a typo (millicores written as cores)
MAX_MEMORY = 64 * 2**40  # 64 TiB


def _as_text(value: Any) -> Any:
    if isinstance(value, bool):
        return value  # refused by the str type: `cpu: true` is not a quantity
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"expected a quantity, got {value!r}")
        return format(Decimal(str(value)).normalize(), "f")
    return value


def cpu_cores(quantity: str) -> Decimal:
    """Cores in a Kubernetes cpu quantity (`"2"`, `"0.5"`, `"500m"`).

    Raises:
        ValueError: not a positive cpu quantity of at most `MAX_CPU` cores.
    """
    match = _CPU.match(quantity.strip())
    if not match:
        raise ValueError(f"cpu must be a Kubernetes quantity like '2', '0.5' or '500m', got {quantity!r}")
    try:
        cores = Decimal(match.group(1)) / (1000 if match.group(2) else 1)
    except InvalidOperation as e:  # pragma: no cover - the pattern admits only decimals
        raise ValueError(f"cpu {quantity!r} is not a number") from e
    if cores <= 0 or cores > MAX_CPU:
        raise ValueError(f"cpu {quantity!r} must be more than 0 and at most {MAX_CPU} cores")
    return cores


def memory_bytes(quantity: str) -> int:
    """Bytes in a Kubernetes memory quantity (`"512Mi"`, `"4Gi"`, `"1G"`, `"1048576"`).

    Raises:
        ValueError: not a positive memory quantity of at most 64 TiB.
    """
    match = _MEMORY.match(quantity.strip())
    if not match:
        raise ValueError(
            f"memory must be a Kubernetes quantity like '512Mi', '4Gi' or '1G', got {quantity!r}"
        )
    amount = math.ceil(Decimal(match.group(1)) * _MEMORY_FACTOR[match.group(2)])
    if amount <= 0 or amount > MAX_MEMORY:
        raise ValueError(f"memory {quantity!r} must be more than 0 bytes and at most 64Ti")
    return amount


class ComputeSpec(StrictModel):
    """What one asset's step asks for. Absent fields are not requested (the launcher's default)."""

    cpu: str | None = Field(None, description="Cores, as a Kubernetes quantity: '2', '0.5', '500m'")
    memory: str | None = Field(None, description="Memory, as a Kubernetes quantity: '512Mi', '4Gi'")
    gpu: int | None = Field(
        None, ge=1, le=64, strict=True, description="GPUs (the `nvidia.com/gpu` limit on Kubernetes)"
    )

    @field_validator("cpu", "memory", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return _as_text(value)

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, value: str | None) -> str | None:
        if value is not None:
            cpu_cores(value)
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None:
            memory_bytes(value)
        return value

    def over(self, base: ComputeSpec | None) -> ComputeSpec:
        """These settings, with the fields this one leaves out taken from `base`."""
        if base is None:
            return self
        return ComputeSpec(
            cpu=self.cpu or base.cpu, memory=self.memory or base.memory, gpu=self.gpu or base.gpu
        )

    @property
    def empty(self) -> bool:
        return self.cpu is None and self.memory is None and self.gpu is None


def check_compute_keys(value: dict[str, ComputeSpec]) -> dict[str, ComputeSpec]:
    """`compute:` keys are asset short names or `default`."""
    unknown = sorted(set(value) - set(COMPUTE_KEYS))
    if unknown:
        raise ValueError(
            f"unknown asset {unknown[0]!r} in compute; expected one of {', '.join(COMPUTE_KEYS)}"
        )
    return value


def compute_for(compute: dict[str, ComputeSpec], asset: str) -> ComputeSpec | None:
    """The settings for `asset`: its own entry over `default`; None when neither is given."""
    own, default = compute.get(asset), compute.get("default")
    if own is None:
        return default
    return own.over(default)
