"""`mlops-dagster`: validate specs, and read or move the model registry kept in the Dagster instance.

    mlops-dagster validate PATH...
    mlops-dagster registry list NAME
    mlops-dagster registry show NAME [VERSION] [--json]
    mlops-dagster registry promote NAME VERSION [--reason TEXT] [--defs FILE | --specs PATH...]
    mlops-dagster registry approve NAME VERSION --by WHO [--reason TEXT] [--defs FILE | --specs PATH...]
    mlops-dagster registry rollback NAME [--reason TEXT] [--defs FILE | --specs PATH...]
    mlops-dagster registry export NAME VERSION --to URI [--defs FILE | --specs PATH...]
    mlops-dagster registry import NAME --from URI [--defs FILE | --specs PATH...]
    mlops-dagster deploy render --target {k8s,ecs,dagster-plus} --env NAME --image IMAGE --out DIR
    mlops-dagster deploy check DIR
    mlops-dagster audit list NAME [--json] [--defs FILE | --specs PATH...]
    mlops-dagster audit verify [NAME] [--defs FILE | --specs PATH...]

The registry of record is the Dagster instance at `$DAGSTER_HOME`: `list` and `show` read its asset
history, and `promote` / `rollback` are Dagster runs of the `<p>/champion` asset, so every change is
in the UI and the event log like any other materialization. `deploy render` writes one environment's
configuration for Kubernetes (Helm), ECS or Dagster+, and `deploy check` validates it offline.
`audit list` shows a pipeline's hash-chained decision log (`<storage root>/audit/<p>.jsonl`), and
`audit verify` checks its chain and the instance's decisions against it (exit 1 unless intact).

The ML libraries (sklearn, bentoml, Great Expectations, Evidently) and the deployment tools
(dagster-k8s, dagster-aws, kubernetes-validate) are imported inside the commands that need them;
dagster and pandas load with the package, so `--help` takes about a second.

To add a command group, write `mlops_dagster/cli/<group>.py` with a `register(sub)` that adds its
parser(s) to `sub` and sets `func=` (an `argparse.Namespace -> int` command) on each, then list
`<group>.register` in `GROUPS` below (and import the module).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from mlops_dagster.cli import audit, deploy, quarantine, registry, validate
from mlops_dagster.cli.errors import CliError
from mlops_dagster.cli.output import err
from mlops_dagster.errors import MlopsDagsterError, SpecError

__all__ = ["GROUPS", "CliError", "build_parser", "main"]

# Top-level commands and command groups, in `--help` order: one `register(sub)` per module.
GROUPS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    validate.register,
    registry.register,
    quarantine.register,
    deploy.register,
    audit.register,
)


def build_parser() -> argparse.ArgumentParser:
    """The `mlops-dagster` argument parser, with every group in GROUPS registered."""
    parser = argparse.ArgumentParser(
        prog="mlops-dagster",
        description="Declarative MLOps on Dagster: validate pipeline specs and manage the model registry.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for register in GROUPS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `mlops-dagster` with `argv` (default: `sys.argv[1:]`); return the exit code.

    Errors a user can fix are printed as `error: ...` on stderr with exit code 1, never as a traceback.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SpecError as e:
        for issue in e.issues:
            print(str(issue), file=sys.stderr)
        print(f"error: {len(e.issues)} spec issue(s)", file=sys.stderr)
        return 1
    except MlopsDagsterError as e:
        err(str(e))
        return 1
    except BrokenPipeError:  # `mlops-dagster registry list x | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        err("interrupted")
        return 130
