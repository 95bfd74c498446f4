"""Great Expectations expectations named in a spec: their check names, and their early validation.

`check_names` is pure (no Great Expectations import), so building definitions stays cheap.
`validate_expectations` imports Great Expectations and resolves every expectation the way the run
will: the snake_case type to its class, the keyword arguments through the class's own (pydantic)
validation, so a typo is a spec error with file:line instead of a failed check in the middle of a run.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlops_dagster.spec.models import ExpectationSpec

if TYPE_CHECKING:
    from great_expectations.expectations import Expectation

_INVALID_CHARS = re.compile(r"[^A-Za-z0-9_]+")
_MAX_NAME = 120

# Fields every GX expectation has that the runner sets itself (ids, result format, exception
# catching): a spec that sets them would change how outcomes are mapped back, so they are refused.
RESERVED_KWARGS = frozenset({"id", "batch_id", "rendered_content", "result_format", "catch_exceptions"})


def _part(value: Any) -> str:
    """One column name as a check-name part: runs of other characters become `_`."""
    text = str(value)
    part = _INVALID_CHARS.sub("_", text).strip("_")
    if not part:  # nothing usable left (for example a non-ASCII name): a short, stable digest
        part = "c" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return part


def expectation_columns(kwargs: dict[str, Any]) -> list[Any]:
    """The columns an expectation is about, in the order they name it."""
    if "column" in kwargs:
        return [kwargs["column"]]
    if "column_A" in kwargs or "column_B" in kwargs:
        return [kwargs[k] for k in ("column_A", "column_B") if k in kwargs]
    column_list = kwargs.get("column_list")
    if isinstance(column_list, list | tuple):
        return list(column_list)
    return []


def _base_name(expectation: ExpectationSpec) -> str:
    parts = [_INVALID_CHARS.sub("_", expectation.type)]
    parts.extend(_part(c) for c in expectation_columns(expectation.kwargs))
    name = "__".join(parts)
    if len(name) > _MAX_NAME:  # long column lists: keep the start readable and the whole unique
        name = f"{name[: _MAX_NAME - 9]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return name


def check_names(expectations: Sequence[ExpectationSpec]) -> list[str]:
    """One Dagster asset-check name per expectation, in the same order.

    A name is the expectation type, plus `__<column>` for a `column` argument (`__<A>__<B>` for
    `column_A`/`column_B`, `__<c1>__<c2>...` for `column_list`), with every character outside
    `[A-Za-z0-9_]` replaced by `_`. A repeated name gets `_2`, `_3`, ... (skipping any suffix that
    another expectation's own name already uses), so the names are unique and only depend on the list.

    Args:
        expectations: The expectations of one asset's quality spec.

    Returns:
        The check names, matching `^[A-Za-z0-9_]+$`, unique, in the order of `expectations`.
    """
    bases = [_base_name(e) for e in expectations]
    taken = set(bases)
    seen: set[str] = set()
    names: list[str] = []
    for base in bases:
        name = base
        if name in seen:
            k = 2
            while f"{base}_{k}" in taken:
                k += 1
            name = f"{base}_{k}"
            taken.add(name)
        seen.add(name)
        names.append(name)
    return names


def expectation_class(expectation_type: str) -> type[Expectation]:
    """The Great Expectations class of a snake_case expectation type.

    Raises:
        LookupError: the type is unknown; the message suggests the closest known types.
    """
    from great_expectations.expectations.registry import (
        get_expectation_impl,
        list_registered_expectation_implementations,
    )

    try:
        cls: type[Expectation] = get_expectation_impl(expectation_type)
    except Exception:  # GX raises ExpectationNotFoundError (and KeyError in older releases)
        known = list_registered_expectation_implementations()
        close = difflib.get_close_matches(expectation_type, known, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise LookupError(f"unknown Great Expectations expectation type {expectation_type!r}{hint}") from None
    return cls


def _own_arguments(cls: type[Expectation]) -> list[str]:
    """The arguments a spec may set: the class's fields minus the ones the runner sets."""
    return [name for name in cls.__fields__ if name not in RESERVED_KWARGS]


def _specific_arguments(cls: type[Expectation]) -> list[str]:
    from great_expectations.expectations import Expectation

    base = set(Expectation.__fields__) | RESERVED_KWARGS
    return [name for name in cls.__fields__ if name not in base]


def _format_errors(
    cls: type[Expectation], expectation_type: str, kwargs: dict[str, Any], errors: list[dict[str, Any]]
) -> list[tuple[str, str]]:
    """Turn pydantic (v1) errors into one (argument, problem) per argument, naming the argument."""
    by_field: dict[str, list[dict[str, Any]]] = {}
    root: list[str] = []
    for error in errors:
        loc = error.get("loc") or ("__root__",)
        if loc[0] == "__root__":
            root.append(str(error.get("msg", "")))
        else:
            by_field.setdefault(str(loc[0]), []).append(error)
    problems: list[tuple[str, str]] = []
    field_failed = False
    for name, errs in by_field.items():
        types = {str(e.get("type", "")) for e in errs}
        if "value_error.extra" in types:
            close = difflib.get_close_matches(name, _own_arguments(cls), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            arguments = ", ".join(_specific_arguments(cls)) or "none"
            problems.append(
                (name, f"unknown argument {name!r} for {expectation_type}{hint}; arguments: {arguments}")
            )
            continue
        field_failed = True
        if "value_error.missing" in types:
            problems.append((name, f"missing required argument {name!r} for {expectation_type}"))
            continue
        # A union type reports one error per alternative; the dict alternative is GX's internal
        # `{"$PARAMETER": ...}` form, noise unless it is the only one.
        messages: list[str] = []
        for e in errs:
            sub = ".".join(str(p) for p in e["loc"][1:])
            msg = f"{sub}: {e.get('msg')}" if sub else str(e.get("msg"))
            if msg not in messages:
                messages.append(msg)
        if len(messages) > 1:
            messages = [m for m in messages if not m.endswith("not a valid dict")] or messages
        problems.append(
            (name, f"invalid value {kwargs.get(name)!r} for argument {name!r}: {'; '.join(messages)}")
        )
    if root and not field_failed:  # model-level checks are only meaningful once the fields parsed
        problems.extend(("", f"{expectation_type}: {msg}") for msg in root)
    return problems


def _check(expectation: ExpectationSpec) -> tuple[Expectation | None, list[tuple[str, str]]]:
    """Construct one expectation; return it (None on any problem) and its (argument, problem) list."""
    try:
        cls = expectation_class(expectation.type)
    except LookupError as e:
        return None, [("", str(e))]
    problems = [(name, _reserved_message(name)) for name in expectation.kwargs if name in RESERVED_KWARGS]
    kwargs = {k: v for k, v in expectation.kwargs.items() if k not in RESERVED_KWARGS}
    try:
        instance = cls(**kwargs)
    except Exception as e:
        errors = getattr(e, "errors", None)
        if callable(errors):  # pydantic's ValidationError (GX models use pydantic.v1)
            problems.extend(_format_errors(cls, expectation.type, kwargs, errors()))
        else:  # a GX validator raising something else
            problems.append(("", f"{expectation.type}: {type(e).__name__}: {e}"))
        return None, problems
    return (None if problems else instance), problems


def _reserved_message(name: str) -> str:
    return f"argument {name!r} is set by mlops_dagster when it runs the expectation; remove it"


def build_expectation(expectation: ExpectationSpec) -> Expectation:
    """Construct the Great Expectations expectation a spec names (imports Great Expectations).

    Raises:
        ValueError: unknown type or bad arguments; the message lists each problem, naming the argument.
    """
    instance, problems = _check(expectation)
    if instance is None:
        raise ValueError("; ".join(problem for _, problem in problems))
    return instance


def validate_expectations(expectations: Sequence[ExpectationSpec]) -> list[tuple[int, str, str]]:
    """Resolve each expectation's type and arguments against Great Expectations.

    Each expectation is constructed exactly as the runner will construct it; nothing is run.

    Args:
        expectations: The expectations of one asset's quality spec.

    Returns:
        One `(index, argument, problem)` per problem, in order: `argument` is the offending keyword
        argument, or "" when the problem is the expectation as a whole (for example an unknown type,
        with a 'did you mean' hint). Empty when every expectation is valid.
    """
    return [(index, name, problem) for index, e in enumerate(expectations) for name, problem in _check(e)[1]]
