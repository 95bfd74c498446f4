"""`mlops-dagster registry list|show|promote|rollback|export|import`: the model registry kept in the
Dagster instance.

`list` (`listing.py`) and `show` (`show.py`) read the instance's asset history; `promote` and
`rollback` (`runs.py`) are Dagster runs of the `<p>/champion` asset; `export` and `import`
(`transfer.py`) move a version between environments as files checked against a sha256 manifest.
"""

from __future__ import annotations

import argparse

from mlops_dagster.cli.project import add_project_options
from mlops_dagster.cli.registry.listing import cmd_list
from mlops_dagster.cli.registry.lookup import MIN_PREFIX
from mlops_dagster.cli.registry.runs import cmd_approve, cmd_promote, cmd_rollback
from mlops_dagster.cli.registry.show import cmd_show
from mlops_dagster.cli.registry.transfer import register_transfer

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `registry` command group to the top-level subparsers."""
    reg = sub.add_parser("registry", help="model versions and champions, from the Dagster instance")
    rsub = reg.add_subparsers(dest="registry_command", metavar="ACTION")
    rsub.required = True

    p = rsub.add_parser("list", help="versions (newest first), champion history and keep decisions")
    p.add_argument("name", metavar="NAME", help="pipeline name")
    p.add_argument("--metric", help="metric column to show (default: the spec's metric, from the model card)")
    p.add_argument("--limit", type=int, default=100, help="at most this many rows per table (default 100)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = rsub.add_parser("show", help="a version's record and model card (default: the champion)")
    p.add_argument("name", metavar="NAME", help="pipeline name")
    p.add_argument(
        "version", nargs="?", metavar="VERSION", help=f"version or unique prefix (>= {MIN_PREFIX})"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_show)

    p = rsub.add_parser("promote", help="promote a version through the gates (a Dagster run)")
    p.add_argument("name", metavar="NAME", help="pipeline name")
    p.add_argument("version", metavar="VERSION", help=f"version or unique prefix (>= {MIN_PREFIX})")
    add_project_options(p)
    p.set_defaults(func=cmd_promote)

    p = rsub.add_parser(
        "approve", help="approve and promote a version through the gates (environments with approval)"
    )
    p.add_argument("name", metavar="NAME", help="pipeline name")
    p.add_argument("version", metavar="VERSION", help=f"version or unique prefix (>= {MIN_PREFIX})")
    p.add_argument("--by", required=True, metavar="WHO", help="the approver: one of the pipeline's owners")
    add_project_options(p)
    p.set_defaults(func=cmd_approve)

    p = rsub.add_parser("rollback", help="return to the previous champion (a Dagster run)")
    p.add_argument("name", metavar="NAME", help="pipeline name")
    add_project_options(p)
    p.set_defaults(func=cmd_rollback)

    register_transfer(rsub)
