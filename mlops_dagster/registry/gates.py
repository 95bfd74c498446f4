"""Evaluation gates: the only way a candidate becomes champion. Pure functions over scores."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlops_dagster.spec.models import GatesSpec


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "promote" if self.promote else "keep"


def decide(
    gates: GatesSpec,
    metric: str,
    candidate: dict[str, float],
    champion: dict[str, float] | None,
) -> GateDecision:
    """Check absolute floors, then the allowed regression against the champion on the same holdout.

    Scores follow sklearn's scorer convention: greater is better. Every check adds a reason, passed or
    failed, so the decision can be read without re-running anything.
    """
    reasons: list[str] = []
    ok = True
    for name, floor in sorted(gates.min.items()):
        score = candidate.get(name)
        if score is None:
            ok = False
            reasons.append(f"FAIL {name}: not computed on the holdout (floor {floor:g})")
        elif score < floor:
            ok = False
            reasons.append(f"FAIL {name} {score:.4f} < floor {floor:g}")
        else:
            reasons.append(f"pass {name} {score:.4f} >= floor {floor:g}")
    if champion is None:
        reasons.append("pass no current champion to compare with")
    else:
        cand, champ = candidate.get(metric), champion.get(metric)
        if cand is None or champ is None:
            ok = False
            reasons.append(f"FAIL {metric}: missing for {'candidate' if cand is None else 'champion'}")
        elif cand < champ - gates.max_regression:
            ok = False
            reasons.append(
                f"FAIL {metric} {cand:.4f} trails champion {champ:.4f} by {champ - cand:.4f} "
                f"> max_regression {gates.max_regression:g}"
            )
        else:
            reasons.append(
                f"pass {metric} {cand:.4f} vs champion {champ:.4f} (max_regression {gates.max_regression:g})"
            )
    return GateDecision(promote=ok, reasons=reasons)
