"""`mlops-dagster`: validate specs, and read or move the model registry kept in the Dagster instance.

    mlops-dagster validate PATH...
    mlops-dagster registry list NAME
    mlops-dagster registry show NAME [VERSION] [--json]
    mlops-dagster registry promote NAME VERSION [--reason TEXT] [--defs FILE | --specs PATH...]
    mlops-dagster registry rollback NAME [--reason TEXT] [--defs FILE | --specs PATH...]

The registry of record is the Dagster instance at `$DAGSTER_HOME`: `list` and `show` read its asset
history, and `promote` / `rollback` are Dagster runs of the `<p>/champion` asset, so every change is
in the UI and the event log like any other materialization. Heavy libraries (dagster, pandas,
sklearn, bentoml) are imported inside the commands that need them, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_dagster.errors import MlopsDagsterError, RegistryError, SpecError

if TYPE_CHECKING:
    import dagster as dg

    from mlops_dagster.registry.records import VersionRecord

MIN_PREFIX = 8
SHORT = 12
DEFAULT_DEFS = "definitions.py"


class CliError(MlopsDagsterError):
    """A command cannot run as asked (environment, arguments, project); the message says how to fix it."""


# ------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _short(version: str | None) -> str:
    return version[:SHORT] if version else "-"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    lines = [indent + "  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append(indent + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _clip(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _add_cwd_to_path() -> None:
    """Import paths in specs (`assets.feed:load_churn`) are relative to the project folder, as in Dagster."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def _require_home() -> Path:
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


def _instance() -> dg.DagsterInstance:
    home = _require_home()
    import dagster as dg
    from dagster._core.errors import DagsterError

    try:
        return dg.DagsterInstance.get()
    except DagsterError as e:
        raise CliError(f"cannot open the Dagster instance at DAGSTER_HOME={home}: {e}") from e


def _known_pipelines(instance: dg.DagsterInstance) -> list[str]:
    names = set()
    for key in instance.get_asset_keys():
        if len(key.path) == 2 and key.path[1] in ("candidate", "champion"):
            names.add(key.path[0])
    return sorted(names)


def _require_pipeline_records(instance: dg.DagsterInstance, name: str) -> None:
    from mlops_dagster.factory.keys import candidate_key, champion_key

    if instance.has_asset_key(candidate_key(name)) or instance.has_asset_key(champion_key(name)):
        return
    known = _known_pipelines(instance)
    raise CliError(
        f"unknown pipeline {name!r}: the instance at DAGSTER_HOME={os.environ.get('DAGSTER_HOME')} has no "
        f"candidate or champion of it (pipelines with a registry: {', '.join(known) or 'none yet'})"
    )


def _resolve(records: Sequence[VersionRecord], name: str, version: str) -> VersionRecord:
    """The record whose version (or sha256) starts with `version`; at least MIN_PREFIX characters."""
    wanted = version.strip().lower()
    if len(wanted) < MIN_PREFIX:
        raise CliError(f"version {version!r} is too short: give at least {MIN_PREFIX} characters of it")
    matches: dict[str, VersionRecord] = {}
    for r in records:
        if r.version.startswith(wanted) or (r.sha256 and r.sha256.startswith(wanted)):
            matches.setdefault(r.version, r)
    if not matches:
        raise CliError(
            f"unknown version {version!r} of pipeline {name!r} "
            f"(see `mlops-dagster registry list {name}` for its versions)"
        )
    if len(matches) > 1:
        raise CliError(
            f"version {version!r} of pipeline {name!r} is ambiguous: it matches "
            f"{', '.join(sorted(matches))}; give more characters"
        )
    return next(iter(matches.values()))


def _run_tags(instance: dg.DagsterInstance, run_ids: set[str]) -> dict[str, dict[str, str]]:
    if not run_ids:
        return {}
    import dagster as dg

    records = instance.get_run_records(dg.RunsFilter(run_ids=sorted(run_ids)))
    return {r.dagster_run.run_id: dict(r.dagster_run.tags) for r in records}


def _primary_metric(name: str, records: Sequence[VersionRecord], explicit: str | None) -> str | None:
    """The metric the spec gates on: `--metric`, else the one named in the newest model card."""
    if explicit:
        return explicit
    from mlops_dagster.registry.store import read_card

    for r in records[:3]:
        try:
            metric = read_card(name, r.version).get("metric")
        except (MlopsDagsterError, OSError, ValueError):
            continue
        if metric:
            return str(metric)
    return None


# ------------------------------------------------------------------------------------------------
# validate
# ------------------------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from mlops_dagster.spec import load_specs, validate_deep

    _add_cwd_to_path()
    specs = load_specs(*args.paths)
    validate_deep(specs)
    if not specs:
        print(f"no pipelines found in {' '.join(args.paths)} (feature groups alone are not a pipeline)")
        return 0
    for spec in specs:
        groups = [g.name for g in spec.feature_groups]
        print(
            f"{spec.name}: {len(groups)} feature group(s)"
            f"{' (' + ', '.join(groups) + ')' if groups else ''}, estimator {spec.model.estimator}"
        )
    print(f"ok: {len(specs)} pipeline(s) valid")
    return 0


# ------------------------------------------------------------------------------------------------
# registry list / show
# ------------------------------------------------------------------------------------------------


def _status(version: str, champion: str | None, champions: set[str], rejected: set[str]) -> str:
    if version == champion:
        return "champion"
    if version in champions:
        return "former champion"
    if version in rejected:
        return "rejected"
    return "candidate"


def _record_json(r: VersionRecord, tags: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "version": r.version,
        "sha256": r.sha256 or None,
        "time": datetime.fromtimestamp(r.timestamp, tz=UTC).isoformat(timespec="seconds"),
        "run_id": r.run_id,
        "metrics": r.metrics,
    }
    if r.decision:
        out.update(decision=r.decision, previous=r.previous or None, reasons=r.reasons)
    if tags is not None:
        out["trigger"] = tags.get("mlops/trigger")
    return out


def cmd_list(args: argparse.Namespace) -> int:
    from mlops_dagster.registry import records

    with _instance() as instance:
        _require_pipeline_records(instance, args.name)
        candidates = records.candidate_history(instance, args.name, limit=args.limit)
        champions = records.champion_history(instance, args.name, limit=args.limit)
        decisions = records.decision_history(instance, args.name, limit=args.limit)
        tags = _run_tags(instance, {r.run_id for r in (*candidates, *champions, *decisions)})
    current = champions[0].version if champions else None
    was_champion = {r.version for r in champions}
    rejected = {r.version for r in decisions if any(x.startswith("FAIL") for x in r.reasons)}

    if args.json:
        payload = {
            "pipeline": args.name,
            "champion": current,
            "versions": [
                {
                    **_record_json(r, tags.get(r.run_id, {})),
                    "status": _status(r.version, current, was_champion, rejected),
                }
                for r in candidates
            ],
            "champion_history": [_record_json(r, tags.get(r.run_id, {})) for r in champions],
            "decisions": [_record_json(r, tags.get(r.run_id, {})) for r in decisions],
        }
        print(json.dumps(payload, indent=2))
        return 0

    metric = _primary_metric(args.name, candidates, args.metric)
    print(f"{args.name}: champion {current or '(none)'}; {len(candidates)} version(s)")
    print()
    print("Versions (newest first)")
    if candidates:
        rows = []
        for r in candidates:
            if metric:
                value = r.metrics.get(metric)
                score = f"{value:.4f}" if value is not None else "-"
            else:
                score = ", ".join(f"{k}={v:.4f}" for k, v in r.metrics.items()) or "-"
            rows.append(
                [
                    "*" if r.version == current else " ",
                    r.version,
                    r.when,
                    score,
                    _status(r.version, current, was_champion, rejected),
                    tags.get(r.run_id, {}).get("mlops/trigger", "manual"),
                    r.run_id[:8],
                ]
            )
        print(_table(["", "VERSION", "TRAINED", metric or "METRICS", "STATUS", "TRIGGER", "RUN"], rows))
    else:
        print("  (no candidate trained yet)")
    print()
    print("Champion history (newest first)")
    if champions:
        rows = [
            [
                r.when,
                r.decision or "-",
                _short(r.version),
                _short(r.previous),
                tags.get(r.run_id, {}).get("mlops/trigger", "manual"),
                r.run_id[:8],
                _clip("; ".join(r.reasons), 70),
            ]
            for r in champions
        ]
        print(_table(["WHEN", "ACTION", "VERSION", "PREVIOUS", "TRIGGER", "RUN", "REASONS"], rows))
    else:
        print("  (no champion yet)")
    print()
    print("Keep decisions (newest first)")
    if decisions:
        rows = [
            [
                r.when,
                _short(r.version),
                _short(r.previous),
                tags.get(r.run_id, {}).get("mlops/trigger", "manual"),
                r.run_id[:8],
                _clip("; ".join(x for x in r.reasons if x.startswith("FAIL")) or "; ".join(r.reasons), 70),
            ]
            for r in decisions
        ]
        print(_table(["WHEN", "CANDIDATE", "CHAMPION", "TRIGGER", "RUN", "REASONS"], rows))
    else:
        print("  (none)")
    return 0


def _format_card(card: dict[str, Any]) -> list[str]:
    lines = []

    def add(label: str, value: Any) -> None:
        if value not in (None, "", [], {}):
            lines.append(f"  {label:<16}{value}")

    metric = card.get("metric")
    metrics = card.get("metrics") or {}
    holdout = card.get("holdout") or {}
    add("description", card.get("description"))
    add("owners", ", ".join(card.get("owners") or []))
    add("task", card.get("task"))
    add("estimator", card.get("estimator"))
    add("params", json.dumps(card.get("params") or {}, sort_keys=True))
    add("metric", metric)
    add(
        "holdout metrics",
        ", ".join(
            f"{k}={v:.4f}"
            for k, v in sorted(metrics.items(), key=lambda kv: (kv[0] != metric, kv[0]))
            if isinstance(v, int | float)
        ),
    )
    add("features", ", ".join(card.get("features") or []))
    add("label", card.get("label"))
    add("training rows", card.get("training_rows"))
    add(
        "holdout",
        f"{holdout.get('rows')} rows from {holdout.get('cutoff')} (fraction {holdout.get('fraction')})"
        if holdout
        else None,
    )
    add("training data", card.get("training_set_data_version"))
    groups = card.get("feature_group_versions") or {}
    add("feature groups", ", ".join(f"{g} @ {_short(v)}" for g, v in groups.items()))
    add("code version", card.get("code_version"))
    add("git commit", card.get("git_commit"))
    add("trained in run", card.get("dagster_run_id"))
    add("trigger", card.get("trigger"))
    add("created", card.get("created_at"))
    add("bentoml tag", card.get("bentoml_tag"))
    return lines


def cmd_show(args: argparse.Namespace) -> int:
    from mlops_dagster.registry import records
    from mlops_dagster.registry.store import read_card

    with _instance() as instance:
        _require_pipeline_records(instance, args.name)
        candidates = records.candidate_history(instance, args.name, limit=1000)
        champions = records.champion_history(instance, args.name, limit=1000)
        decisions = records.decision_history(instance, args.name, limit=1000)
    current = champions[0] if champions else None
    if args.version:
        record = _resolve([*candidates, *champions], args.name, args.version)
    elif current is None:
        raise CliError(
            f"pipeline {args.name!r} has no champion yet: give a VERSION "
            f"(see `mlops-dagster registry list {args.name}`)"
        )
    else:
        record = current
    trained = next((r for r in candidates if r.version == record.version), None)
    sha256 = (trained or record).sha256 or record.sha256
    history = sorted(
        (r for r in (*champions, *decisions) if r.version == record.version),
        key=lambda r: r.timestamp,
        reverse=True,
    )
    is_champion = current is not None and current.version == record.version
    card_error = None
    try:
        card = read_card(args.name, record.version)
    except (MlopsDagsterError, OSError, ValueError) as e:
        card, card_error = None, f"model card of {args.name}:{record.version} cannot be read: {e}"

    if args.json:
        payload = {
            "pipeline": args.name,
            "version": record.version,
            "sha256": sha256,
            "champion": is_champion,
            "trained": _record_json(trained) if trained else None,
            "history": [_record_json(r) for r in history],
            "card": card,
        }
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(f"{args.name}:{record.version}{'  (champion)' if is_champion else ''}")
        print(f"  {'sha256':<16}{sha256 or '-'}")
        if trained:
            print(f"  {'trained':<16}{trained.when} in run {trained.run_id}")
        if current is not None and not is_champion:
            print(f"  {'champion':<16}{current.version}")
        if card is not None:
            print()
            print("Model card")
            print("\n".join(_format_card(card)))
        if history:
            print()
            print("Registry history of this version (newest first)")
            for r in history:
                if r.decision == "keep":
                    what = f"keep: not promoted over {_short(r.previous)}"
                else:
                    what = f"{r.decision} (previous {_short(r.previous)})"
                print(f"  {r.when}  {what}  run {r.run_id[:8]}")
                for reason in r.reasons:
                    print(f"      - {reason}")
    if card_error:
        _err(card_error)
        return 1
    return 0


# ------------------------------------------------------------------------------------------------
# registry promote / rollback: Dagster runs of the champion asset
# ------------------------------------------------------------------------------------------------


def _load_defs(args: argparse.Namespace) -> tuple[dg.Definitions, str]:
    import dagster as dg

    if args.specs:
        from mlops_dagster.factory.build import build_definitions

        _add_cwd_to_path()
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


def _champion_op(defs: dg.Definitions, name: str, source: str) -> tuple[dg.AssetKey, str]:
    from mlops_dagster.factory.keys import champion_key

    key = champion_key(name)
    keys = set(defs.resolve_all_asset_keys())
    if key not in keys:
        known = sorted(k.path[0] for k in keys if len(k.path) == 2 and k.path[1] == "champion")
        raise CliError(
            f"unknown pipeline {name!r} in {source}: no asset {key.to_user_string()} "
            f"(pipelines: {', '.join(known) or 'none'})"
        )
    try:
        op_name = defs.resolve_assets_def(key).op.name
    except Exception:
        op_name = "__".join(key.path)
    return key, op_name


def _error_text(message: str, cls_name: str) -> str:
    """`mlops_dagster.errors.RegistryError: churn: ...` -> `churn: ...`."""
    text = message.strip()
    head, sep, rest = text.partition(": ")
    if sep and head.rsplit(".", 1)[-1] == cls_name:
        return rest.strip()
    return text


def _failure_message(result: Any) -> str:
    """The user-facing cause of a failed run: the Failure's description or the innermost error."""
    for event in result.all_events:
        if not event.is_step_failure:
            continue
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            return data.user_failure_data.description
        err = data.error
        while err is not None and err.cause is not None:
            err = err.cause
        if err is not None:
            return _error_text(err.message, err.cls_name or "")
    for event in result.all_events:
        if event.is_failure and getattr(event, "message", None):
            return str(event.message)
    return "the run failed (see its event log in the Dagster UI)"


def _run_champion(
    args: argparse.Namespace, action: str, config: dict[str, Any], before: VersionRecord | None
) -> int:
    """Materialize `<p>/champion` with `config` in a run tagged by the CLI; report what moved."""
    import warnings

    import dagster as dg
    from dagster._core.errors import DagsterError

    from mlops_dagster.factory.keys import Tags

    defs, source = _load_defs(args)
    key, op_name = _champion_op(defs, args.name, source)
    assets = [a for a in (defs.assets or []) if isinstance(a, dg.AssetsDefinition | dg.AssetSpec)]
    run_config: dict[str, Any] = {"ops": {op_name: {"config": config}}}
    if not args.verbose:  # the full log is in the run's event log (UI); keep the terminal readable
        run_config["loggers"] = {"console": {"config": {"log_level": "CRITICAL"}}}
    with warnings.catch_warnings():
        if not args.verbose:
            warnings.simplefilter("ignore")
        with _instance() as instance:
            try:
                result = dg.materialize(
                    assets,
                    selection=[key],
                    instance=instance,
                    resources=dict(defs.resources or {}),
                    run_config=run_config,
                    tags={Tags.TRIGGER: "cli", Tags.ACTION: action, Tags.PIPELINE: args.name},
                    raise_on_error=False,
                )
            except DagsterError as e:  # the run could not start (config, resources, definitions)
                raise CliError(
                    f"cannot start the {action} run of {key.to_user_string()} ({source}): {e}"
                ) from e
            from mlops_dagster.registry import records

            after = records.current_champion(instance, args.name)
            observed = [
                r for r in records.decision_history(instance, args.name, limit=5) if r.run_id == result.run_id
            ]
    print(f"run {result.run_id} ({action} {args.name}) {'succeeded' if result.success else 'FAILED'}")
    if not result.success:
        _err(f"{action} of {args.name} failed in run {result.run_id}: {_failure_message(result)}")
        for r in observed:
            for reason in r.reasons:
                print(f"  - {reason}", file=sys.stderr)
        return 1
    if after is None or after.run_id != result.run_id:  # no materialization: the champion did not move
        reasons = observed[0].reasons if observed else []
        print(f"champion unchanged: {after.version if after else '(none)'}")
        for reason in reasons:
            print(f"  - {reason}")
        return 0
    print(f"champion of {args.name} is now {after.version} (was {before.version if before else '(none)'})")
    for reason in after.reasons:
        print(f"  - {reason}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from mlops_dagster.registry import records

    with _instance() as instance:
        _require_pipeline_records(instance, args.name)
        record = _resolve(records.candidate_history(instance, args.name, limit=1000), args.name, args.version)
        before = records.current_champion(instance, args.name)
    config = {"action": "promote", "version": record.version, "reason": args.reason or ""}
    return _run_champion(args, "promote", config, before)


def cmd_rollback(args: argparse.Namespace) -> int:
    from mlops_dagster.registry import records

    with _instance() as instance:
        _require_pipeline_records(instance, args.name)
        history = records.champion_history(instance, args.name, limit=1000)
    if not history:
        raise RegistryError(f"pipeline {args.name!r} has no champion yet: there is nothing to roll back")
    target = records.rollback_target(history)
    if target is None:
        current = history[0].version
        why = (
            "it is the only champion there has been"
            if all(r.version == current for r in history)
            else "the champions after it were all rolled back"
        )
        raise RegistryError(
            f"pipeline {args.name!r}: nothing to roll back to: {current} is the first champion in the "
            f"history ({why})"
        )
    config = {"action": "rollback", "reason": args.reason or ""}
    return _run_champion(args, "rollback", config, history[0])


# ------------------------------------------------------------------------------------------------
# parser and entry point
# ------------------------------------------------------------------------------------------------


def _add_project_options(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--defs",
        metavar="FILE",
        help=f"python file exposing `defs` (a dagster.Definitions); default ./{DEFAULT_DEFS}",
    )
    group.add_argument(
        "--specs", nargs="+", metavar="PATH", help="build the definitions from spec files or folders instead"
    )
    p.add_argument("--reason", default="", help="why: recorded with the decision in the run's metadata")
    p.add_argument("-v", "--verbose", action="store_true", help="show the run's Dagster log")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlops-dagster",
        description="Declarative MLOps on Dagster: validate pipeline specs and manage the model registry.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("validate", help="check spec files or folders (imports, scorers, references)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.set_defaults(func=cmd_validate)

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
    _add_project_options(p)
    p.set_defaults(func=cmd_promote)

    p = rsub.add_parser("rollback", help="return to the previous champion (a Dagster run)")
    p.add_argument("name", metavar="NAME", help="pipeline name")
    _add_project_options(p)
    p.set_defaults(func=cmd_rollback)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SpecError as e:
        for issue in e.issues:
            print(str(issue), file=sys.stderr)
        print(f"error: {len(e.issues)} spec issue(s)", file=sys.stderr)
        return 1
    except MlopsDagsterError as e:
        _err(str(e))
        return 1
    except BrokenPipeError:  # `mlops-dagster registry list x | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
