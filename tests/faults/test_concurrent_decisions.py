"""Ten champion decisions at once, promotions and rollbacks mixed, on a PostgreSQL-backed instance.

`tests/registry/test_concurrent_promotions.py` races ten promotions on the embedded SQLite instance,
where the decision lock backs up a pool whose claim is not atomic. Here six promotions and four
rollbacks race on PostgreSQL, where the pool's claim is atomic: each request is the real CLI
(`mlops-dagster registry promote|rollback`) in its own process, all forked at the same moment from a
loaded fork server (`runner.py`). A rollback reads the champion history when its turn comes, so the
mix only stays consistent if the decisions really take turns.

The history is built so that every request can succeed in any order: five champions in a row (so
four rollbacks always have somewhere to go) and six new versions to promote.
"""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg

from mlops_dagster.audit import read_log, verify_log
from mlops_dagster.registry import records
from mlops_dagster.registry.pool import champion_pool
from tests.faults.churn import churn_specs
from tests.faults.runner import Runner

P = "churn"
CHAMP = "churn__champion"
CHAIN, NEW, ROLLBACKS = 5, 6, 4


def _materialize(specs: Path, *keys: str) -> dict[str, object]:
    return {"what": "materialize", "specs": str(specs), "keys": list(keys)}


def _step_spans(instance: dg.DagsterInstance, run_id: str) -> tuple[float, float]:
    """When the run's champion step started and ended (it holds the pool's slot in between)."""
    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
    stamps = [e.timestamp for e in instance.all_logs(run_id, of_type=kinds) if e.step_key == CHAMP]
    assert len(stamps) == 2, f"run {run_id}: champion step events {stamps}"
    return min(stamps), max(stamps)


def test_ten_concurrent_promotions_and_rollbacks_take_turns(pg_home: Path, tmp_path: Path) -> None:
    base = churn_specs(tmp_path / "specs-base", max_iter=3)
    with Runner(tmp_path) as runner, dg.DagsterInstance.get() as instance:
        for day in ("2026-01-01", "2026-01-02"):
            runner.ok({**_materialize(base, "churn/dataset"), "partition": day})
        runner.ok(_materialize(base, "features/customer_activity", "churn/training_set"))
        for n in range(CHAIN):  # each trained and promoted through the (lenient) gates
            specs = churn_specs(tmp_path / f"chain-{n}", 4 + n)
            runner.ok({**_materialize(specs, "churn/candidate", "churn/champion"), "pool": P})
        chain = records.champion_history(instance, P, limit=100)[::-1]
        assert len({r.version for r in chain}) == CHAIN
        trainings = [
            _materialize(churn_specs(tmp_path / f"new-{n}", 4 + CHAIN + n), "churn/candidate")
            for n in range(NEW)
        ]
        for outcome in runner.together(trainings):  # independent versions: trained at once
            assert outcome.exit == 0, outcome.log[-4000:]
        fresh = [r.version for r in records.candidate_history(instance, P, limit=100)][:NEW]
        before = records.current_champion(instance, P)
        assert before is not None and before.version == chain[-1].version
        assert not set(fresh) & {r.version for r in chain}

        cli = ["--specs", str(base)]
        requests = [{"what": "cli", "args": ["registry", "promote", P, v, *cli]} for v in fresh]
        for i in range(ROLLBACKS):  # interleaved: promote, rollback, promote, rollback, ...
            requests.insert(2 * i + 1, {"what": "cli", "args": ["registry", "rollback", P, *cli]})
        outcomes = runner.together(requests)

        ran: dict[str, str] = {}  # run id -> what its CLI printed
        for request, outcome in zip(requests, outcomes, strict=True):
            assert outcome.exit == 0, f"{request['args']} failed:\n{outcome.log[-4000:]}"
            match = re.search(
                r"^run ([0-9a-f-]{36}) \((promote|rollback) churn\) succeeded", outcome.log, re.M
            )
            assert match, outcome.log
            ran[match.group(1)] = outcome.log
        history = records.champion_history(instance, P, limit=100)  # newest first
        decided = [r for r in history if r.run_id in ran][::-1]  # the ten decisions, in the order made
        assert len(decided) == len(requests) == 10
        assert sum(r.decision == "rollback" for r in decided) == ROLLBACKS

        # They took turns: the champion steps never overlapped (each holds the pool's one slot) ...
        spans = sorted(_step_spans(instance, r.run_id) for r in decided)
        assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:], strict=False)), spans
        # ... and each read the champion the one before it made: a chain, no two from the same one.
        assert [r.previous for r in decided] == [before.version, *(r.version for r in decided[:-1])]
        # Each rollback went where the history at its turn said, and each CLI printed its own decision.
        for n, record in enumerate(decided):
            if record.decision == "rollback":
                target = records.rollback_target(history[len(history) - len(chain) - n :])
                assert target is not None and record.version == target.version
            assert f"champion of churn is now {record.version} (was {record.previous})" in ran[record.run_id]
        champion = records.current_champion(instance, P)
        assert champion is not None and champion.version == decided[-1].version
        pool = instance.event_log_storage.get_concurrency_info(champion_pool(P))
        assert pool.limit == 1 and not pool.claimed_slots and not pool.pending_steps

        # The audit log holds the same decisions in the same order, verifies, and ends with the champion.
        assert verify_log(P, instance=instance) == []
        moves = [r for r in read_log(P) if r["action"] in ("promote", "manual_promote", "rollback")]
        assert [(r["run_id"], r["version"], r["previous"]) for r in moves[-10:]] == [
            (r.run_id, r.version, r.previous) for r in decided
        ]
        assert moves[-1]["version"] == champion.version
