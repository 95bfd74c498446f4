"""Resolve the import paths a spec names, and the deep validation that needs them.

Loading specs never imports user code or sklearn. `validate_deep` does, once, early: it is what
`mlops-dagster validate` and the tests run, so a typo in an estimator path is a spec error with a
file:line, not a crash in the middle of a training run.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from mlops_dagster.errors import SpecError, SpecIssue
from mlops_dagster.spec.models import FeatureGroupSpec, PipelineSpec


def resolve_object(path: str) -> Any:
    """Import `package.module:attr` or `package.module.attr` and return the attribute.

    Raises:
        ImportError: with a message naming the path and what is missing.
    """
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ImportError(f"cannot import {path!r}: expected 'module:attribute' or 'module.attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ImportError(f"cannot import {path!r}: {e}") from e
    except Exception as e:  # user modules can fail at import time in any way
        raise ImportError(
            f"cannot import {path!r}: importing {module_name!r} raised {type(e).__name__}: {e}"
        ) from e
    try:
        return getattr(module, attr)
    except AttributeError as e:
        raise ImportError(f"cannot import {path!r}: module {module_name!r} has no attribute {attr!r}") from e


def _issue(spec: PipelineSpec | FeatureGroupSpec, loc: tuple[str | int, ...], message: str) -> SpecIssue:
    return spec.issue(loc, message)


def _param_problems(estimator: type, instance: Any, params: dict[str, Any]) -> list[tuple[str | None, str]]:
    """Each parameter that breaks the estimator's own declared constraints, with sklearn's message.

    sklearn estimators declare a constraint per parameter (type, interval, options) and check them all
    at `fit` with `_validate_params`. Run here once, then per parameter, so each bad one is named
    (None: sklearn refused the combination, not one parameter).
    """
    validate = getattr(instance, "_validate_params", None)  # absent outside sklearn
    if validate is None:
        return []
    try:
        validate()
        return []
    except (ValueError, TypeError) as e:  # sklearn's InvalidParameterError is both
        whole = str(e)
    problems: list[tuple[str | None, str]] = []
    for name, value in params.items():
        try:
            estimator(**{name: value})._validate_params()
        except (ValueError, TypeError) as e:
            problems.append((name, str(e)))
    return problems or [(None, whole)]


def _check_scorer(name: str) -> str | None:
    from sklearn.metrics import get_scorer, get_scorer_names

    try:
        get_scorer(name)
    except ValueError:
        close = [n for n in get_scorer_names() if name.split("_")[-1] in n][:5]
        hint = f" (did you mean one of {close}?)" if close else ""
        return f"unknown sklearn scorer {name!r}{hint}"
    return None


def _check_pipeline(spec: PipelineSpec) -> list[SpecIssue]:
    from sklearn.base import is_classifier, is_regressor

    issues: list[SpecIssue] = []
    try:
        estimator = resolve_object(spec.model.estimator)
    except ImportError as e:
        issues.append(_issue(spec, ("model", "estimator"), str(e)))
    else:
        if not (isinstance(estimator, type) and hasattr(estimator, "fit")):
            issues.append(
                _issue(spec, ("model", "estimator"), f"{spec.model.estimator!r} is not an estimator class")
            )
        else:
            try:
                instance = estimator(**spec.model.params)
            except TypeError as e:
                issues.append(_issue(spec, ("model", "params"), f"{spec.model.estimator}: {e}"))
            else:
                issues.extend(
                    _issue(spec, ("model", "params", *((name,) if name else ())), problem)
                    for name, problem in _param_problems(estimator, instance, spec.model.params)
                )
                if spec.model.task == "classification" and not is_classifier(instance):
                    issues.append(
                        _issue(spec, ("model", "estimator"), f"{spec.model.estimator} is not a classifier")
                    )
                if spec.model.task == "regression" and not is_regressor(instance):
                    issues.append(
                        _issue(spec, ("model", "estimator"), f"{spec.model.estimator} is not a regressor")
                    )
    for loc, name in [
        (("model", "metric"), spec.model.metric),
        *((("gates", "min", m), m) for m in spec.gates.min),
        *(
            [(("monitoring", "performance", "metric"), spec.monitoring.performance.metric)]
            if spec.monitoring.performance
            else []
        ),
    ]:
        problem = _check_scorer(name)
        if problem:
            issues.append(_issue(spec, loc, problem))
    if spec.dataset.source.python:
        try:
            fn = resolve_object(spec.dataset.source.python)
            if not callable(fn):
                issues.append(_issue(spec, ("dataset", "source", "python"), "is not callable"))
        except ImportError as e:
            issues.append(_issue(spec, ("dataset", "source", "python"), str(e)))
    return issues


def _check_group(group: FeatureGroupSpec) -> list[SpecIssue]:
    try:
        fn = resolve_object(group.transform)
    except ImportError as e:
        return [_issue(group, ("transform",), str(e))]
    if not callable(fn):
        return [_issue(group, ("transform",), f"{group.transform!r} is not callable")]
    return []


def _check_expectations(spec: PipelineSpec | FeatureGroupSpec) -> list[SpecIssue]:
    if not spec.quality.expectations:
        return []
    from mlops_dagster.quality.expectations import validate_expectations

    return [
        _issue(spec, ("quality", "expectations", index, *((field,) if field else ())), problem)
        for index, field, problem in validate_expectations(spec.quality.expectations)
    ]


def validate_deep(specs: Iterable[PipelineSpec]) -> None:
    """Resolve every import path, scorer name and Great Expectations expectation the specs use.

    Raises:
        SpecError: listing each unresolvable estimator, transform, source, metric or expectation
            with file:line.
    """
    issues: list[SpecIssue] = []
    seen: set[str] = set()
    for spec in specs:
        issues.extend(_check_pipeline(spec))
        issues.extend(_check_expectations(spec))
        for group in spec.feature_groups:
            if group.name not in seen:
                seen.add(group.name)
                issues.extend(_check_group(group))
                issues.extend(_check_expectations(group))
    if issues:
        raise SpecError(issues)
