"""The job state machine, driven directly: every (state, event) pair, and the bookkeeping
each event may do."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watchd.lifecycle import (
    ACTIVE,
    EFFECTS,
    IN_FLIGHT,
    TERMINAL,
    TRANSITIONS,
    WORK,
    Event,
    IllegalData,
    IllegalTransition,
    State,
    Work,
    mermaid,
    next_state,
    step,
)

S, E = State, Event
WALL, MONO = 1_700_000_000.0, 500.0

# The moves of the table as the design documents them, written out once more by hand: a
# change to TRANSITIONS must be a change to this list too. The same-state retries, internal
# errors and the two ways to fail are listed apart.
EXPECTED = {
    (S.WAITING, E.SUBMIT): S.SUBMITTING,
    (S.WAITING, E.RENAMED): S.WAITING,
    (S.WAITING, E.VANISHED): S.GONE,
    (S.SUBMITTING, E.CREATED): S.PROCESSING,
    (S.SUBMITTING, E.SYNC_DONE): S.DOWNLOADING,
    (S.SUBMITTING, E.CREATE_LOST): S.WAITING,
    (S.SUBMITTING, E.UNSENT): S.WAITING,
    (S.SUBMITTING, E.RETRY): S.WAITING,
    (S.SUBMITTING, E.VANISHED): S.GONE,
    (S.PROCESSING, E.POLL_PENDING): S.PROCESSING,
    (S.PROCESSING, E.POLL_ERROR): S.PROCESSING,
    (S.PROCESSING, E.POLL_DONE): S.DOWNLOADING,
    (S.PROCESSING, E.RETRY): S.WAITING,
    (S.DOWNLOADING, E.URL_EXPIRED): S.PROCESSING,
    (S.DOWNLOADING, E.PLANNED): S.DOWNLOADING,
    (S.DOWNLOADING, E.WRITTEN): S.FINISHING,
    (S.FINISHING, E.PLANNED): S.FINISHING,
    (S.FINISHING, E.MOVED): S.DONE,
    (S.FINISHING, E.GIVE_UP): S.DONE,
    (S.FAILING, E.PLANNED): S.FAILING,
    (S.FAILING, E.MOVED): S.FAILED,
    (S.FAILING, E.GIVE_UP): S.FAILED,
    (S.FAILED, E.REQUEUE): S.WAITING,
    (S.FAILED, E.REQUERY): S.PROCESSING,
    (S.GONE, E.REQUEUE): S.WAITING,
}
for _s in ACTIVE:
    EXPECTED[(_s, E.STEP_FAILED)] = _s
    if _s != S.SUBMITTING:
        EXPECTED[(_s, E.INTERNAL_ERROR)] = _s
    if _s != S.FAILING:
        EXPECTED[(_s, E.FAIL)] = S.FAILING
    if _s not in (S.FINISHING, S.FAILING):
        EXPECTED[(_s, E.GIVE_UP)] = S.FAILING

ALL_PAIRS = list(itertools.product(State, Event))


def job(state: State, **fields) -> dict:
    return {"state": state.value, "attempts": 0, "requests": 0, "polls": 0, "ambiguous": 0,
            "tries": 0, **fields}  # fmt: skip


def test_the_table_is_the_documented_one():
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize(("state", "event"), ALL_PAIRS, ids=lambda x: x.value)
def test_every_state_event_pair_moves_as_listed_or_raises(state, event):
    """The full product, so a new state or event cannot go untested."""
    if (state, event) in EXPECTED:
        result = step(job(state), event, wall=WALL, mono=MONO)
        assert result.state == EXPECTED[(state, event)]
        assert result.fields["state"] == result.state.value
        assert result.fields["updated_at"] == WALL
    else:
        with pytest.raises(IllegalTransition) as info:
            step(job(state), event, wall=WALL, mono=MONO)
        assert info.value.state is state and info.value.event is event
        assert state.value in str(info.value) and event.value in str(info.value)


def test_every_active_state_has_exactly_one_work_and_terminal_states_none():
    assert set(WORK) == set(ACTIVE)
    assert not TERMINAL & set(WORK)
    assert set(WORK.values()) == set(Work)


def test_every_active_state_can_be_left_and_give_up_is_always_possible():
    """Nothing can be stranded: from every active state some event leaves it, and a job
    that keeps failing can always be given up (the runtime's last way out)."""
    for state in ACTIVE:
        assert any(src is state and dst is not state for (src, _), dst in TRANSITIONS.items())
        assert (state, E.GIVE_UP) in TRANSITIONS or (state, E.FAIL) in TRANSITIONS
        assert (state, E.STEP_FAILED) in TRANSITIONS


def reachable(start: State) -> set[State]:
    reached, frontier = {start}, [start]
    while frontier:
        src = frontier.pop()
        for (s, _), dst in TRANSITIONS.items():
            if s is src and dst not in reached:
                reached.add(dst)
                frontier.append(dst)
    return reached


def test_every_active_state_reaches_a_terminal_state():
    for start in ACTIVE:
        assert reachable(start) & TERMINAL, start


def test_every_state_is_reachable_from_waiting():
    assert reachable(S.WAITING) == set(State)


def test_a_submitting_job_has_no_plain_internal_error():
    """A create that broke after its commit may have left: that is a lost answer (the
    runtime records CREATE_LOST), never a quiet retry of the same state."""
    assert (S.SUBMITTING, E.INTERNAL_ERROR) not in TRANSITIONS
    assert (S.SUBMITTING, E.CREATE_LOST) in TRANSITIONS


def test_submit_counts_an_attempt_and_clears_the_last_task():
    result = step(
        job(S.WAITING, attempts=1, task_id="old", polls=3),
        E.SUBMIT,
        {"started": 10.0, "deadline": 190.0},
        wall=WALL,
        mono=MONO,
    )
    f = result.fields
    assert f["attempts"] == 2 and f["task_id"] is None and f["polls"] == 0
    assert (f["started"], f["deadline"], f["due"]) == (10.0, 190.0, MONO)


def test_unsent_gives_the_attempt_back_and_counts_no_request():
    f = step(job(S.SUBMITTING, attempts=2, requests=4), E.UNSENT, wall=WALL, mono=MONO).fields
    assert f["attempts"] == 1 and "requests" not in f


def test_answers_count_one_request_each_and_a_lost_answer_is_ambiguous():
    f = step(job(S.SUBMITTING, requests=1), E.CREATE_LOST, wall=WALL, mono=MONO).fields
    assert f["requests"] == 2 and f["ambiguous"] == 1 and f["cause"] == "ambiguous"
    f = step(job(S.PROCESSING, requests=2, polls=1), E.POLL_PENDING, wall=WALL, mono=MONO).fields
    assert f["requests"] == 3 and f["polls"] == 2
    f = step(job(S.PROCESSING), E.RETRY, wall=WALL, mono=MONO).fields
    assert f["cause"] == "task_failed"


def test_a_change_of_state_resets_tries_and_a_retry_of_the_step_counts_one():
    f = step(job(S.DOWNLOADING, tries=3), E.WRITTEN, wall=WALL, mono=MONO).fields
    assert f["tries"] == 0
    f = step(job(S.DOWNLOADING, tries=3), E.STEP_FAILED, {"due": 9.0}, wall=WALL, mono=MONO)
    assert f.fields["tries"] == 4 and f.fields["due"] == 9.0 and f.state is S.DOWNLOADING
    f = step(job(S.DOWNLOADING, tries=3), E.URL_EXPIRED, wall=WALL, mono=MONO).fields
    assert f["tries"] == 4  # re-queries for a fresh URL are bounded too


def test_an_event_may_set_only_its_own_fields():
    with pytest.raises(IllegalData, match="attempts"):
        step(job(S.FINISHING), E.MOVED, {"attempts": 9}, wall=WALL, mono=MONO)
    with pytest.raises(IllegalData, match="task_id"):
        step(job(S.FINISHING), E.MOVED, {"task_id": "x"}, wall=WALL, mono=MONO)


def test_terminal_states_have_no_due_time_and_a_finish_time():
    for state, event in ((S.FINISHING, E.MOVED), (S.FAILING, E.MOVED), (S.WAITING, E.VANISHED)):
        f = step(job(state), event, {"due": 5.0} if event != E.VANISHED else None,
                 wall=WALL, mono=MONO).fields  # fmt: skip
        assert f["due"] is None and f["finished_at"] == WALL


def test_requeue_starts_afresh_but_keeps_the_history_counters():
    f = step(job(S.FAILED, attempts=5, requests=9, task_id="t"), E.REQUEUE, {"cause": "retry"},
             wall=WALL, mono=MONO).fields  # fmt: skip
    assert f["attempts"] == 0 and f["task_id"] is None and f["cause"] == "retry"
    assert "requests" not in f  # what was spent stays spent
    f = step(job(S.FAILED, task_id="t"), E.REQUERY, {"deadline": 9.0}, wall=WALL, mono=MONO)
    assert f.state is S.PROCESSING and "task_id" not in f.fields  # the task is asked again


@given(st.sampled_from(sorted(TRANSITIONS, key=str)), st.integers(0, 50), st.integers(0, 50))
def test_counters_never_go_below_zero_and_only_move_by_one(pair, attempts, requests):
    state, event = pair
    before = job(state, attempts=attempts, requests=requests)
    fields = step(before, event, wall=WALL, mono=MONO).fields
    for name in ("attempts", "requests", "polls", "ambiguous"):
        if name in fields:
            assert fields[name] >= 0
            assert fields[name] - before[name] in (-1, 1) or fields[name] == 0


def test_every_event_has_effects_declared():
    assert set(EFFECTS) == set(Event)


def test_next_state_accepts_the_strings_stored_in_the_ledger():
    assert next_state("waiting", "submit") is S.SUBMITTING
    with pytest.raises(ValueError):
        next_state("sleeping", E.SUBMIT)
    with pytest.raises(ValueError):
        next_state(S.WAITING, "explode")


def test_state_sets_are_disjoint_where_they_should_be():
    assert not ACTIVE & TERMINAL
    assert IN_FLIGHT <= ACTIVE
    assert set(State) == ACTIVE | TERMINAL


def test_mermaid_draws_each_move_once_and_the_common_ways_out_in_a_note():
    lines = mermaid().splitlines()
    assert lines[0] == "stateDiagram-v2"
    common = {E.STEP_FAILED, E.INTERNAL_ERROR, E.FAIL, E.GIVE_UP}
    for (src, event), dst in TRANSITIONS.items():
        line = f"    {src.value} --> {dst.value}: {event.value}"
        shown = event not in common or (event is E.GIVE_UP and dst is not S.FAILING)
        assert lines.count(line) == (1 if shown else 0)
    assert any("give_up" in line and "note" in line for line in lines)
    for state in TERMINAL:
        assert f"    {state.value} --> [*]" in lines
