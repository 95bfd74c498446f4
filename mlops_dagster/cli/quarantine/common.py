"""Shared by the quarantine commands: where the data root is, opening the quarantine, reading its
entries, and the text formatting both `list` and `show` use."""

from __future__ import annotations

import os
from datetime import datetime
from typing import TYPE_CHECKING

from mlops_dagster.cli.errors import CliError
from mlops_dagster.cli.project import require_home

if TYPE_CHECKING:
    import dagster as dg
    from upath import UPath

    from mlops_dagster.io.quarantine import Quarantine, QuarantineEntry

NO_PARTITION = "-"


# ------------------------------------------------------------------------------------------------
# where the quarantine is
# ------------------------------------------------------------------------------------------------


def data_root(storage: str | None) -> UPath:
    """The data root: `--storage`, else the IO manager's default under `$DAGSTER_HOME` (required)."""
    from upath import UPath

    if storage:
        try:
            root = UPath(storage)
            if root.protocol in ("", "file", "local"):
                root = root.expanduser().absolute()
            found = root.is_dir()
        except Exception as e:  # fsspec backends raise their own errors (credentials, missing package)
            raise CliError(f"cannot open --storage {storage}: {type(e).__name__}: {e}") from e
        if not found:
            raise CliError(
                f"--storage {storage}: no such folder (give the data root: the Parquet IO manager's "
                "base_path, by default $DAGSTER_HOME/mlops/data)"
            )
        return root
    if not os.environ.get("DAGSTER_HOME"):
        raise CliError(
            "DAGSTER_HOME is not set. Quarantined batches are kept with the data, by default under "
            "$DAGSTER_HOME/mlops/data: set DAGSTER_HOME to the instance folder your Dagster deployment uses "
            "(the one `dagster dev` runs with), or pass --storage FOLDER|URL (the IO manager's base_path)."
        )
    require_home()
    from mlops_dagster.io.parquet import ParquetIOManager

    return ParquetIOManager().root()


def open_quarantine(root: UPath) -> Quarantine:
    from mlops_dagster.io.quarantine import Quarantine

    return Quarantine(root)


def known_names(root: UPath, quarantine: Quarantine) -> list[str]:
    """First asset-key parts with data or quarantine entries under the root (pipelines and `features`)."""
    names: set[str] = set()
    for folder in (root, quarantine.root):
        if folder.is_dir():
            names.update(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    return sorted(names)


def require_known(root: UPath, quarantine: Quarantine, name: str) -> None:
    known = known_names(root, quarantine)
    if name.split("/")[0] not in known:
        raise CliError(
            f"unknown pipeline {name!r}: nothing of it under the data root {root} "
            f"(names with data there: {', '.join(known) or 'none yet'})"
        )


def read_entries(quarantine: Quarantine, key: dg.AssetKey | None) -> list[QuarantineEntry]:
    try:
        return quarantine.entries(key)
    except (OSError, ValueError) as e:  # an unreadable folder or report.json
        raise CliError(f"cannot read the quarantine under {quarantine.root}: {e}") from e


# ------------------------------------------------------------------------------------------------
# formatting
# ------------------------------------------------------------------------------------------------


def format_when(held_at: str) -> str:
    try:
        return datetime.fromisoformat(held_at).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return held_at or "-"


def format_partition(partition: str | None) -> str:
    return partition if partition else NO_PARTITION


def format_size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    if n < 1024:
        return f"{n} bytes"
    value = n / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def format_names(names: list[str], width: int = 80) -> str:
    """Whole names, comma-separated, as many as fit in `width`, then `+N more`."""
    shown: list[str] = []
    for i, name in enumerate(names):
        if shown and len(", ".join([*shown, name])) > width:
            return ", ".join([*shown, f"+{len(names) - i} more"])
        shown.append(name)
    return ", ".join(shown) or "-"
