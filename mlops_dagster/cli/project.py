"""Where the commands find their inputs: the project folder, its Definitions, and the Dagster instance.

The registry of record is the Dagster instance at `$DAGSTER_HOME`; `promote` and `rollback` also need
the project's Definitions, from `--defs FILE` (default `./definitions.py`) or `--specs PATH...`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_dagster.cli.errors import CliError
from mlops_dagster.errors import MlopsDagsterError

if TYPE_CHECKING:
    import dagster as dg

DEFAULT_DEFS = "definitions.py"


def add_cwd_to_path() -> None:
    """Import paths in specs (`assets.feed:load_churn`) are relative to the project folder, as in Dagster."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def require_home() -> Path:
    """`$DAGSTER_HOME`, checked: set, absolute, an existing folder."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise CliError(
            "DAGSTER_HOME is not set. The registry of record is the Dagster instance: set DAGSTER_HOME "
            "to the instance folder your Dagster deployment uses (the one `dagster dev` runs with)."
        )
    path = Path(home)
    if not path.is_absolute():
        raise CliError(f"DAGSTER_HOME={home!r} must be an absolute path")
    if not path.is_dir():
        raise CliError(f"DAGSTER_HOME={home!r} is not an existing folder; create it (with a dagster.yaml)")
    return path


def open_instance() -> dg.DagsterInstance:
    """The Dagster instance at `$DAGSTER_HOME` (use it as a context manager)."""
    home = require_home()
    import dagster as dg
    from dagster import DagsterError

    try:
        return dg.DagsterInstance.get()
    except DagsterError as e:
        raise CliError(f"cannot open the Dagster instance at DAGSTER_HOME={home}: {e}") from e


def known_pipelines(instance: dg.DagsterInstance) -> list[str]:
    """Pipelines with a candidate or champion in the instance, sorted."""
    names = set()
    for key in instance.get_asset_keys():
        if len(key.path) == 2 and key.path[1] in ("candidate", "champion"):
            names.add(key.path[0])
    return sorted(names)


def require_pipeline_records(instance: dg.DagsterInstance, name: str) -> None:
    """Raise a CliError naming the known pipelines if the instance has no candidate or champion of `name`."""
    from mlops_dagster.keys import candidate_key, champion_key

    if instance.has_asset_key(candidate_key(name)) or instance.has_asset_key(champion_key(name)):
        return
    known = known_pipelines(instance)
    raise CliError(
        f"unknown pipeline {name!r}: the instance at DAGSTER_HOME={os.environ.get('DAGSTER_HOME')} has no "
        f"candidate or champion of it (pipelines with a registry: {', '.join(known) or 'none yet'})"
    )


def load_defs(args: argparse.Namespace) -> tuple[dg.Definitions, str]:
    """The project's Definitions from `--specs` or the `--defs` file, and a description of the source."""
    import dagster as dg

    if args.specs:
        from mlops_dagster.factory.build import build_definitions

        add_cwd_to_path()
        return build_definitions(*args.specs), f"specs {' '.join(args.specs)}"
    path = Path(args.defs or DEFAULT_DEFS).resolve()
    if not path.is_file():
        raise CliError(
            f"no definitions file at {path}: run from the project folder, or pass --defs FILE "
            "(a python file exposing `defs`) or --specs PATH..."
        )
    import importlib.util

    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    module_name = f"_mlops_dagster_cli_defs_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise CliError(f"cannot load {path} as a python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except MlopsDagsterError:
        raise
    except Exception as e:  # user code: say where it failed, without a traceback
        raise CliError(f"cannot load definitions from {path}: {type(e).__name__}: {e}") from e
    defs = getattr(module, "defs", None)
    if defs is not None and not isinstance(defs, dg.Definitions) and callable(defs):
        try:
            defs = defs()  # a `@dg.definitions` function
        except MlopsDagsterError:
            raise
        except Exception as e:
            raise CliError(f"cannot build definitions with {path}:defs(): {type(e).__name__}: {e}") from e
    if not isinstance(defs, dg.Definitions):
        raise CliError(f"{path} does not expose `defs`, a dagster.Definitions (found {type(defs).__name__})")
    return defs, str(path)


def add_defs_options(p: argparse.ArgumentParser) -> None:
    """`--defs FILE | --specs PATH...` (read by `load_defs`): the project a command works in."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--defs",
        metavar="FILE",
        help=f"python file exposing `defs` (a dagster.Definitions); default ./{DEFAULT_DEFS}",
    )
    group.add_argument(
        "--specs", nargs="+", metavar="PATH", help="build the definitions from spec files or folders instead"
    )


def add_project_options(p: argparse.ArgumentParser) -> None:
    """`--defs FILE | --specs PATH...` (read by `load_defs`), `--reason` and `-v` for a command that runs."""
    add_defs_options(p)
    p.add_argument("--reason", default="", help="why: recorded with the decision in the run's metadata")
    p.add_argument("-v", "--verbose", action="store_true", help="show the run's Dagster log")


def requested_by() -> str:
    """Who runs the command, for the audit log: the login name, else `unknown`."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid, as in some containers
        return "unknown"
