"""`environments:` files: where and how one set of pipeline specs runs (CONTRACT section 6).

A YAML file with a top-level `environments:` mapping is the third kind of spec file, read with the
pipelines and feature groups (errors at file:line). Each entry names an environment (`dev`, `staging`,
`prod`, ...) and may set its storage root, whether sensors start running, stricter gates per pipeline,
compute per asset, its notifier, and the governance switches `approval` and `signing`.

    environments:
      staging:
        storage: s3://ml-staging/mlops
      prod:
        storage: s3://ml-prod/mlops
        sensors: running
        gates: {churn: {min: {roc_auc: 0.8}, max_regression: 0.0}}
        compute: {candidate: {cpu: "2", memory: 4Gi}}
        notifier: {kind: slack, url_env: MLOPS_SLACK_WEBHOOK_URL}
        approval: required

Which environment a process serves is chosen at run time (`mlops_dagster/environments.py`).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mlops_dagster.errors import SpecIssue
from mlops_dagster.spec.compute import ComputeSpec, check_compute_keys
from mlops_dagster.spec.models import Located, StrictModel

ENV_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
ENV_VAR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://(.*)$")


class GatesOverride(StrictModel):
    """An environment's gates for one pipeline: `min` floors merge over the pipeline's, per metric."""

    min: dict[str, float] = Field(default_factory=dict, description="Floors added or replaced, per metric")
    max_regression: float | None = Field(None, ge=0, description="Replaces the pipeline's max_regression")


class NotifierSettings(StrictModel):
    """The environment's alert channel. Secrets are named by environment variable, never written here."""

    kind: Literal["log", "webhook", "slack"] = "log"
    url_env: str | None = Field(
        None, pattern=ENV_VAR_PATTERN, description="Environment variable holding the webhook URL"
    )
    token_env: str | None = Field(
        None, pattern=ENV_VAR_PATTERN, description="Environment variable holding a bearer token"
    )

    @model_validator(mode="after")
    def _url_needed(self) -> NotifierSettings:
        if self.kind != "log" and not self.url_env:
            raise ValueError(f"notifier kind {self.kind!r} needs url_env (the variable holding its URL)")
        return self


class EncryptionSettings(StrictModel):
    """Server-side encryption of everything written to `s3://` storage (SSE-S3 or SSE-KMS)."""

    sse: Literal["s3", "kms"] = Field(description="`s3`: SSE-S3 (AES256); `kms`: SSE-KMS with `kms_key_id`")
    kms_key_id: str | None = Field(
        None, min_length=1, description="The KMS key (id, ARN or alias/...): required with `sse: kms`"
    )

    @model_validator(mode="after")
    def _key_matches(self) -> EncryptionSettings:
        if self.sse == "kms" and not self.kms_key_id:
            raise ValueError("sse: kms needs kms_key_id (the KMS key's id, ARN or alias/...)")
        if self.sse == "s3" and self.kms_key_id:
            raise ValueError("kms_key_id is for sse: kms (SSE-S3 uses S3's own keys)")
        return self

    def request_arguments(self) -> dict[str, str]:
        """The S3 request arguments that ask for this encryption on every object written."""
        if self.sse == "s3":
            return {"ServerSideEncryption": "AES256"}
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": str(self.kms_key_id)}


def check_storage(value: str) -> str:
    """A local path or an `s3://bucket/prefix` URL (other schemes are not supported)."""
    text = value.strip()
    if not text:
        raise ValueError("storage must be a folder or an s3:// URL, got an empty string")
    match = _SCHEME.match(text)
    if match:
        scheme, rest = match.group(1).lower(), match.group(2)
        if scheme == "file":
            return text
        if scheme != "s3":
            raise ValueError(f"storage supports local folders and s3:// URLs, not {scheme}://")
        if not rest.split("/")[0]:
            raise ValueError(f"storage {value!r} names no bucket (expected s3://bucket/prefix)")
    return text.rstrip("/") or "/"


class EnvironmentSpec(Located):
    """One environment's settings. `name` is the key of its entry in `environments:`."""

    name: str = Field(pattern=ENV_NAME_PATTERN)
    storage: str | None = Field(
        None, description="Storage root: a folder or s3:// URL (default: <default root>/<environment>)"
    )
    sensors: Literal["running", "stopped"] | None = Field(
        None, description="Start every sensor running or stopped (default: each sensor's own default)"
    )
    gates: dict[str, GatesOverride] = Field(
        default_factory=dict, description="Per pipeline name: gates over the pipeline's own"
    )
    compute: dict[str, ComputeSpec] = Field(
        default_factory=dict, description="Per asset short name or `default`: over each pipeline's compute"
    )
    notifier: NotifierSettings | None = None
    encryption: EncryptionSettings | None = Field(
        None,
        description=(
            "Server-side encryption of every object written to the `s3://` storage root (local storage "
            "is protected by the disk's own encryption)"
        ),
    )
    executor: Literal["multiprocess", "in_process", "k8s", "ecs"] | None = Field(
        None,
        description=(
            "How a run executes its steps: `k8s` (each step in its own pod, sized by `compute:`; "
            "dagster-k8s' k8s_job_executor), `ecs` (each step in its own task; dagster-aws' "
            "ecs_executor), `multiprocess` or `in_process`; default: Dagster's (multiprocess)"
        ),
    )
    approval: Literal["required", "none"] = Field(
        "none",
        description="`required`: a champion change other than an automatic rollback waits for approval",
    )
    signing: Literal["required", "optional", "off"] = Field(
        "off", description="`required`: unsigned or badly signed artifacts are refused"
    )

    @field_validator("storage")
    @classmethod
    def _storage(cls, value: str | None) -> str | None:
        return None if value is None else check_storage(value)

    @field_validator("compute")
    @classmethod
    def _compute_keys(cls, value: dict[str, ComputeSpec]) -> dict[str, ComputeSpec]:
        return check_compute_keys(value)

    @model_validator(mode="after")
    def _encryption_needs_s3(self) -> EnvironmentSpec:
        if self.encryption is not None and not (self.storage or "").lower().startswith("s3://"):
            raise ValueError(
                "encryption applies to s3:// storage; a local storage root is protected by the disk's own "
                "encryption (set `storage: s3://bucket/prefix`, or remove `encryption`)"
            )
        return self


class EnvironmentsFile(StrictModel):
    """The top level of an `environments:` file: environment name -> settings."""

    environments: dict[str, dict[str, object] | None] = Field(min_length=1)


def check_environments(envs: list[EnvironmentSpec], pipeline_names: set[str] | None) -> list[SpecIssue]:
    """Issues across environment entries: a name declared twice, gates for a pipeline that is not there.

    Args:
        envs: Every environment entry read, in file order.
        pipeline_names: The pipelines loaded with them; None when unknown (no pipeline check).
    """
    issues: list[SpecIssue] = []
    first: dict[str, EnvironmentSpec] = {}
    for env in envs:
        if env.name in first:
            issues.append(
                env.issue(
                    (), f"duplicate environment {env.name!r} (first declared in {first[env.name].place(())})"
                )
            )
            continue
        first[env.name] = env
        if pipeline_names is None:
            continue
        for pipeline in env.gates:
            if pipeline not in pipeline_names:
                known = ", ".join(sorted(pipeline_names))
                message = f"unknown pipeline {pipeline!r} (pipelines: {known})"
                issues.append(env.issue(("gates", pipeline), message))
    return issues
