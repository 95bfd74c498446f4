"""Terminal output shared by the commands: error lines, short versions, tables, JSON records."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_dagster.registry.records import VersionRecord

SHORT = 12


def err(message: str) -> None:
    """Print `error: message` to stderr."""
    print(f"error: {message}", file=sys.stderr)


def short(version: str | None) -> str:
    """The first SHORT characters of a version, or `-`."""
    return version[:SHORT] if version else "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> str:
    """Left-aligned columns, two spaces apart, without trailing blanks."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    lines = [indent + "  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append(indent + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def clip(text: str, width: int = 80) -> str:
    """`text` on one line, cut to `width` characters with `...`."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def iso_time(timestamp: float) -> str:
    """Epoch seconds as an ISO 8601 UTC time, to the second."""
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="seconds")


def record_json(r: VersionRecord, tags: dict[str, str] | None = None) -> dict[str, Any]:
    """A registry record as a JSON-ready dict; with `tags` (its run's), also the trigger."""
    from mlops_dagster.keys import Tags

    out: dict[str, Any] = {
        "version": r.version,
        "sha256": r.sha256 or None,
        "time": iso_time(r.timestamp),
        "run_id": r.run_id,
        "metrics": r.metrics,
    }
    if r.decision:
        out.update(decision=r.decision, previous=r.previous or None, reasons=r.reasons)
    if tags is not None:
        out["trigger"] = tags.get(Tags.TRIGGER)
    return out
