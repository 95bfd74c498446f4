"""Where each field of a spec was written (file, line, field path): `file:line field: message` errors."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlops_dagster.errors import SpecIssue

Loc = tuple[str | int, ...]


def format_loc(loc: Loc) -> str:
    """`("model", "features", 1)` -> `model.features[1]`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass
class SourceMap:
    """Line numbers (1-based) of every key and item in one YAML file, by field path.

    Attributes:
        file: The file the lines are in.
        lines: Field path -> line of its key (mapping entries) or its item (list entries).
    """

    file: str
    lines: dict[Loc, int] = field(default_factory=dict)

    def line(self, loc: Loc) -> int | None:
        """The line of `loc`, else of its closest written parent (a missing field is reported there)."""
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), None)

    def issue(self, loc: Loc, message: str) -> SpecIssue:
        """An issue at `loc` of this file."""
        return SpecIssue(self.file, self.line(loc), format_loc(loc), message)
