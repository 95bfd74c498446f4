"""Does the edge bundle predict what the champion predicts? Both run on the same holdout rows.

The champion gets the holdout as training saw it (`prepare_frame`: missing text is None); the bundle's
own `predictor.py` gets the same rows as dicts, the way a device calls it. sklearn, numpy and pandas
are only used inside `check_parity`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_dagster.errors import DataError, PackagingError
from mlops_dagster.packaging.onnx_bundle import verify_bundle

if TYPE_CHECKING:
    import pandas as pd

_CHUNK = 10_000
_SHOWN = 5


@dataclass(frozen=True)
class ParityResult:
    """How closely the bundle matched the champion on `n_rows` holdout rows.

    Attributes:
        passed: every tolerance held.
        n_rows: holdout rows compared.
        label_agreement: share of rows with the same class label (classification, else None).
        max_proba_diff: largest absolute difference of a class probability (classification, else None).
        max_rel_err: largest relative error of a prediction, see `check_parity` (regression, else None).
        details: tolerances, the error definition and the first disagreeing row positions.
    """

    passed: bool
    n_rows: int
    label_agreement: float | None
    max_proba_diff: float | None
    max_rel_err: float | None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, for asset metadata."""
        return asdict(self)


def load_predictor(bundle_dir: str | Path) -> Any:
    """The bundle's own `predictor.py`, run from the checked bytes after every bundle file (and its
    signature, as the environment's `signing` says) is checked.

    Raises:
        IntegrityError: a bundle file is missing or altered.
        SignatureError: the signing policy refuses the bundle.
    """
    from mlops_dagster.packaging.edge_predictor import load_verified_predictor
    from mlops_dagster.registry.signing import host_policy, refusals

    verify_bundle(bundle_dir)  # IntegrityError naming the file at fault
    with refusals():  # runs the bytes it hashed: nothing is imported from disk
        return load_verified_predictor(bundle_dir, signing=host_policy())


def _as_trained(holdout: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """The feature columns as `prepare_frame` gives them to the model: missing text is None."""
    import pandas as pd

    frame = holdout[list(features)].reset_index(drop=True)
    for col in features:
        if pd.api.types.is_object_dtype(frame[col]) or pd.api.types.is_string_dtype(frame[col]):
            frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    return frame


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    import pandas as pd

    numeric = {
        c: frame[c].astype("float64")
        for c in frame.columns
        if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
    }
    return frame.assign(**numeric).to_dict(orient="records")  # type: ignore[return-value]


def check_parity(
    model: Any,
    bundle_dir: str | Path,
    holdout: pd.DataFrame,
    features: Sequence[str],
    task: str,
    *,
    label_tolerance: float = 0.999,
    proba_atol: float = 1e-4,
    rtol: float = 1e-5,
) -> ParityResult:
    """Compare the sklearn champion with the bundle's predictor on the holdout rows.

    Classification passes when the bundle's classes are the champion's, at least `label_tolerance` of
    the labels agree and every class probability is within `proba_atol`. A label counts as agreeing
    when it is identical, or when the champion's own probabilities tie (within `proba_atol`) between
    its label and the bundle's: float32 rounding then breaks the tie either way. `details` keeps the
    exact agreement and the number of ties. Regression passes when every prediction is within `rtol` relative
    error, where the error of a row is `|bundle - champion| / max(|champion|, scale)` and `scale` is the
    mean absolute champion prediction over the holdout (at least 1e-6). ONNX computes in float32, whose
    rounding error follows the size of the model's terms, not of a result that happens to be near zero;
    the floor keeps such rows from failing on noise while rows of typical size are held to `rtol`.

    Raises:
        DataError: the holdout is empty or lacks a feature column.
        IntegrityError: a bundle file does not match its manifest.
    """
    import numpy as np

    if task not in ("classification", "regression"):
        raise PackagingError(f"task must be 'classification' or 'regression', got {task!r}")
    missing = [c for c in features if c not in holdout.columns]
    if missing:
        raise DataError(f"the holdout lacks feature columns {missing}")
    if holdout.empty:
        raise DataError("the holdout is empty: there is nothing to compare the edge bundle on")
    predictor = load_predictor(bundle_dir)
    frame = _as_trained(holdout, features)
    rows = _rows(frame)
    chunks = [rows[i : i + _CHUNK] for i in range(0, len(rows), _CHUNK)]
    details: dict[str, Any] = {"bundle": str(bundle_dir)}

    if task == "classification":
        expected = np.asarray(model.predict(frame)).astype(object)
        got = np.asarray([label for chunk in chunks for label in predictor.predict(chunk)], dtype=object)
        expected_p = np.asarray(model.predict_proba(frame), dtype=np.float64)
        got_p = np.asarray([p for chunk in chunks for p in predictor.predict_proba(chunk)], dtype=np.float64)
        if got_p.shape != expected_p.shape:
            raise PackagingError(
                f"the bundle gives probabilities of shape {got_p.shape}, not {expected_p.shape}"
            )
        classes = [c.item() if hasattr(c, "item") else c for c in model.classes_]
        same = expected == got
        # A tie (the champion's top classes within proba_atol, e.g. 25 of 50 trees each way) is broken
        # by float rounding; the bundle picking another top class there is not a disagreement.
        column = {c: i for i, c in enumerate(classes)}
        picked = np.array([column.get(label, -1) for label in got.tolist()])
        got_score = np.where(picked >= 0, expected_p[np.arange(len(got)), picked], -np.inf)
        tie = ~same & (got_score >= expected_p.max(axis=1) - proba_atol)
        agreement = float(np.mean(same | tie))
        diff = np.abs(got_p - expected_p).max(axis=1)
        max_diff = float(np.max(diff))
        details.update(
            label_tolerance=label_tolerance,
            proba_atol=proba_atol,
            exact_label_agreement=float(np.mean(same)),
            ties=int(np.sum(tie)),
            classes_match=classes == list(predictor.classes),
            label_mismatch_rows=np.flatnonzero(~(same | tie))[:_SHOWN].tolist(),
            proba_mismatch_rows=np.flatnonzero(~(diff <= proba_atol))[:_SHOWN].tolist(),
        )
        passed = agreement >= label_tolerance and max_diff <= proba_atol and details["classes_match"] is True
        return ParityResult(passed, len(frame), agreement, max_diff, None, details)

    expected_v = np.asarray(model.predict(frame), dtype=np.float64).ravel()
    got_v = np.asarray([v for chunk in chunks for v in predictor.predict(chunk)], dtype=np.float64)
    scale = max(float(np.mean(np.abs(expected_v))), 1e-6)
    rel = np.abs(got_v - expected_v) / np.maximum(np.abs(expected_v), scale)
    rel = np.where(np.isnan(rel), np.inf, rel)  # a NaN from either side is a failure, never a pass
    max_rel = float(np.max(rel))
    details.update(
        rtol=rtol,
        scale=scale,
        rel_err="|bundle - champion| / max(|champion|, scale); scale = mean |champion| (>= 1e-6)",
        max_abs_err=float(np.max(np.abs(got_v - expected_v))),
        mismatch_rows=np.flatnonzero(rel > rtol)[:_SHOWN].tolist(),
    )
    return ParityResult(max_rel <= rtol, len(frame), None, None, max_rel, details)
