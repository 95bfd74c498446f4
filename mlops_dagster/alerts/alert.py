"""The alert: one frozen, JSON-able message a sensor or asset hands to a `Notifier`."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Severity = Literal["info", "warning", "error"]
SEVERITIES: tuple[str, ...] = get_args(Severity)


@dataclass(frozen=True, kw_only=True)
class Alert:
    """Something a person should hear about: a failed quality check, drift, a refused candidate...

    Args:
        title: One short line, e.g. "churn/dataset 2026-01-05: 2 quality checks failed".
        text: The body, plain text, e.g. "expect_column_values_to_not_be_null__customer_id (5.1%
            unexpected), ...".
        severity: "info", "warning" or "error".
        pipeline: The pipeline it concerns, if any (e.g. "churn").
        asset_key: The asset it concerns as a user string (`AssetKey.to_user_string()`, e.g.
            "churn/dataset"), if any.
        partition: The partition key it concerns, if any.
        details: Extra machine-readable facts; JSON-able values (anything else is sent as `str()`).
        dedupe_key: A stable key receivers can use to fold repeats of the same alert together.
    """

    title: str
    text: str
    severity: Severity
    pipeline: str | None = None
    asset_key: str | None = None
    partition: str | None = None
    details: dict[str, Any] = field(default_factory=dict, hash=False)
    dedupe_key: str | None = None

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"Alert.severity must be one of {list(SEVERITIES)}, got {self.severity!r}")
        # A private copy, so the caller mutating its dict later cannot change a sent alert.
        object.__setattr__(self, "details", dict(self.details))

    def to_dict(self) -> dict[str, Any]:
        """The alert as a JSON-safe dict, field order kept (see `to_json` for how odd values are written)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        """The alert as one line of strict JSON: the webhook body and the `log` notifier's record.

        Never fails on odd detail values: numpy-style scalars become Python numbers, NaN and infinities
        become strings ("nan", "inf"), tuples and sets become lists, anything else its `str()`.
        """
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(v) for v in value), key=str)
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):  # numpy scalars
        try:
            return _jsonable(value.item())
        except Exception:
            pass
    return str(value)
