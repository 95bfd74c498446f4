"""`mlops-dagster quarantine list|show`: batches held back because their blocking checks failed.

Quarantine lives with the data (`<data root>/.quarantine/<asset/key>/<partition or __all__>/`, see
`mlops_dagster.io.quarantine`), not in the Dagster instance: the data root is the Parquet IO manager's
default, `$DAGSTER_HOME/mlops/data`, or `--storage FOLDER|URL` (its `base_path`). Pipeline datasets are
held as `NAME/dataset`, feature groups as `features/<group>`.

`list` (`listing.py`) and `show` (`show.py`) share the data root, the quarantine and the formatting
helpers in `common.py`.
"""

from __future__ import annotations

import argparse

from mlops_dagster.cli.quarantine.common import NO_PARTITION
from mlops_dagster.cli.quarantine.listing import cmd_list
from mlops_dagster.cli.quarantine.show import cmd_show

__all__ = ["register"]

DEFAULT_ROWS = 10


def _add_storage(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        metavar="URL",
        help="data root: a folder or s3:// URL, the IO manager's base_path "
        "(default $DAGSTER_HOME/mlops/data)",
    )


def _rows(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"give 0 or more, not {n}")
    return n


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `quarantine` command group to the top-level subparsers."""
    q = sub.add_parser("quarantine", help="batches held back by failed blocking checks, with the reasons")
    qsub = q.add_subparsers(dest="quarantine_command", metavar="ACTION")
    qsub.required = True

    p = qsub.add_parser("list", help="held batches: asset, partition, when, failed checks, first reason")
    p.add_argument(
        "name",
        nargs="?",
        metavar="NAME",
        help="pipeline name (its `NAME/dataset`), or `features` for the feature groups; default: all",
    )
    _add_storage(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = qsub.add_parser("show", help="one held batch: every reason, per-check details, the first rows")
    p.add_argument("name", metavar="NAME", help="pipeline name")
    p.add_argument(
        "partition",
        nargs="?",
        metavar="PARTITION",
        help=f"partition key; omit or `{NO_PARTITION}` for an unpartitioned asset (a feature group)",
    )
    p.add_argument(
        "--asset",
        default="dataset",
        metavar="dataset|features/<group>",
        help="which asset of the pipeline (default: dataset)",
    )
    p.add_argument(
        "--rows",
        type=_rows,
        default=DEFAULT_ROWS,
        metavar="N",
        help=f"show the first N rows of held data (default {DEFAULT_ROWS})",
    )
    _add_storage(p)
    p.add_argument("--json", action="store_true", help="machine-readable output (the full report)")
    p.set_defaults(func=cmd_show)
