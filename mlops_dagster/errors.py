"""Errors a user can act on. Each subclass names one fixable condition."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class MlopsDagsterError(Exception):
    """Base class for every error raised by mlops_dagster."""


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a spec file: where it is and what is wrong."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.field}" if self.field else ""
        return f"{where}{field}: {self.message}"


class SpecError(MlopsDagsterError):
    """A pipeline or feature-group spec is invalid. Lists every issue found, each with file:line."""

    def __init__(self, issues: Sequence[SpecIssue]):
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class DataError(MlopsDagsterError):
    """The data does not fit the spec (missing column, empty batch, single-class label...)."""


class TransformError(MlopsDagsterError):
    """A user transform (feature group or python source) raised or returned something unusable."""


class IntegrityError(MlopsDagsterError):
    """A stored artifact does not match its recorded sha256: it is refused, never loaded."""


class RegistryError(MlopsDagsterError):
    """A registry operation cannot be done (unknown version, nothing to roll back to...)."""


class PackagingError(MlopsDagsterError):
    """A champion cannot be packaged for serving (no ONNX converter for its estimator, bundle mismatch)."""
