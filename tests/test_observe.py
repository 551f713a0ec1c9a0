"""One place sees every committed transition; a broken observer harms nothing."""

from __future__ import annotations

from sqlite_utils import Database
from structlog.testing import capture_logs

from watchd.ledger import Ledger
from watchd.lifecycle import Event
from watchd.observe import Transition


def _fields(n: int = 1) -> dict:
    return {"folder": "f", "key": f"f:{n}:", "path": f"/in/{n}.png", "name": f"{n}.png"}


def test_observers_see_records_and_transitions_after_the_commit() -> None:
    ledger = Ledger(Database(memory=True))
    seen: list[Transition] = []

    def observer(t: Transition) -> None:
        # Called after the commit: the row already holds the new state.
        assert ledger.get(t.job_id)["state"] == (t.dst or t.job["state"])
        seen.append(t)

    ledger.observers.add(observer)
    job = ledger.add_job(_fields())
    ledger.commit(job, Event.SUBMIT, {"attempt": 1})
    assert [(t.event, t.src, t.dst) for t in seen] == [
        ("recorded", None, "waiting"),
        ("submit", "waiting", "submitting"),
    ]
    assert seen[1].detail == {"attempt": 1} and seen[1].folder == "f"
    assert seen[1].name == "1.png" and seen[1].job["attempts"] == 1


def test_a_failing_observer_is_reported_once_and_harms_neither_the_job_nor_others() -> None:
    ledger = Ledger(Database(memory=True))
    good: list[str] = []

    def broken(t: Transition) -> None:
        raise RuntimeError("boom")

    ledger.observers.add(broken)
    ledger.observers.add(lambda t: good.append(t.event))
    with capture_logs() as logs:
        job = ledger.add_job(_fields())
        ledger.commit(job, Event.SUBMIT)
    assert good == ["recorded", "submit"]
    assert ledger.get(job)["state"] == "submitting"
    assert sum("observer" in entry["event"] for entry in logs) == 1


def test_every_committed_transition_has_its_log_line() -> None:
    from watchd.observe import log_transition

    ledger = Ledger(Database(memory=True))
    ledger.observers.add(log_transition)
    with capture_logs(processors=[]) as logs:
        job = ledger.add_job(_fields())
        ledger.commit(job, Event.SUBMIT, {"attempt": 1})
    lines = [e for e in logs if e["event"] == "transition"]
    assert [(e["transition"], e["src"], e["dst"]) for e in lines] == [
        ("recorded", None, "waiting"),
        ("submit", "waiting", "submitting"),
    ]
    assert lines[1]["attempt"] == 1 and lines[1]["file"] == "1.png"
