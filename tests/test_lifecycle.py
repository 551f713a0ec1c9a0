"""The job state machine, driven directly: every (state, event) pair of State x Event."""

import itertools

import pytest

from watchd.lifecycle import (
    ACTIVE,
    IN_FLIGHT,
    TERMINAL,
    TRANSITIONS,
    Event,
    IllegalTransition,
    State,
    Step,
    mermaid,
    step,
)

S, E = State, Event

# The table as the design documents it, written out once more by hand: a change to
# TRANSITIONS must be a change to this list too.
EXPECTED = {
    (S.WAITING, E.SUBMIT): (S.SUBMITTING, ("send_create",)),
    (S.WAITING, E.VANISHED): (S.GONE, ()),
    (S.WAITING, E.FAIL): (S.FAILING, ("move_to_failed",)),
    (S.SUBMITTING, E.CREATED): (S.PROCESSING, ("schedule_poll",)),
    (S.SUBMITTING, E.SYNC_DONE): (S.DOWNLOADING, ("download",)),
    (S.SUBMITTING, E.CREATE_LOST): (S.WAITING, ("mark_ambiguous", "backoff")),
    (S.SUBMITTING, E.UNSENT): (S.WAITING, ()),
    (S.SUBMITTING, E.RETRY): (S.WAITING, ("backoff",)),
    (S.SUBMITTING, E.VANISHED): (S.GONE, ()),
    (S.SUBMITTING, E.FAIL): (S.FAILING, ("move_to_failed",)),
    (S.PROCESSING, E.POLL_PENDING): (S.PROCESSING, ("schedule_poll",)),
    (S.PROCESSING, E.POLL_DONE): (S.DOWNLOADING, ("download",)),
    (S.PROCESSING, E.RETRY): (S.WAITING, ("backoff",)),
    (S.PROCESSING, E.FAIL): (S.FAILING, ("move_to_failed",)),
    (S.DOWNLOADING, E.URL_EXPIRED): (S.PROCESSING, ("schedule_poll",)),
    (S.DOWNLOADING, E.RETRY): (S.WAITING, ("backoff",)),
    (S.DOWNLOADING, E.WRITTEN): (S.FINISHING, ("move_to_done",)),
    (S.DOWNLOADING, E.FAIL): (S.FAILING, ("move_to_failed",)),
    (S.FINISHING, E.MOVED): (S.DONE, ()),
    (S.FAILING, E.MOVED): (S.FAILED, ()),
    (S.FAILED, E.REQUEUE): (S.WAITING, ()),
    (S.GONE, E.REQUEUE): (S.WAITING, ()),
}

ALL_PAIRS = list(itertools.product(State, Event))


def test_the_table_is_the_documented_one():
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize(("state", "event"), ALL_PAIRS, ids=lambda x: x.value)
def test_every_state_event_pair_moves_as_listed_or_raises(state, event):
    """The full product, so a new state or event cannot go untested."""
    if (state, event) in EXPECTED:
        new_state, actions = EXPECTED[(state, event)]
        assert step(state, event) == Step(new_state, actions)
    else:
        with pytest.raises(IllegalTransition) as info:
            step(state, event)
        assert info.value.state is state
        assert info.value.event is event
        assert state.value in str(info.value) and event.value in str(info.value)


def test_step_accepts_the_strings_stored_in_the_ledger():
    assert step("waiting", "submit") == Step(S.SUBMITTING, ("send_create",))
    assert isinstance(step("waiting", "submit").state, State)


def test_unknown_state_or_event_names_are_refused():
    with pytest.raises(ValueError):
        step("sleeping", E.SUBMIT)
    with pytest.raises(ValueError):
        step(S.WAITING, "explode")


def test_an_illegal_transition_is_a_value_error():
    with pytest.raises(ValueError):
        step(S.DONE, E.SUBMIT)


def test_step_results_are_frozen():
    result = step(S.WAITING, E.SUBMIT)
    with pytest.raises(AttributeError):
        result.state = S.DONE  # type: ignore[misc]


def test_terminal_states_accept_nothing_but_a_requeue():
    for state in TERMINAL:
        accepted = {event for (src, event) in TRANSITIONS if src is state}
        assert accepted <= {E.REQUEUE}
    assert not any(src is S.DONE for src, _ in TRANSITIONS)  # done is final


def test_no_active_state_is_a_dead_end():
    """Each active state accepts some event: no job can get stuck in it."""
    for state in ACTIVE:
        assert any(src is state for src, _ in TRANSITIONS)


def test_every_state_is_reachable_from_waiting():
    reached, frontier = {S.WAITING}, [S.WAITING]
    while frontier:
        src = frontier.pop()
        for (s, _), (dst, _) in TRANSITIONS.items():
            if s is src and dst not in reached:
                reached.add(dst)
                frontier.append(dst)
    assert reached == set(State)


def test_state_sets_are_disjoint_where_they_should_be():
    assert not ACTIVE & TERMINAL
    assert IN_FLIGHT <= ACTIVE
    assert S.WAITING not in IN_FLIGHT and S.FINISHING not in IN_FLIGHT
    assert {S.DONE, S.FAILED, S.GONE} == TERMINAL
    # failing is neither: not counted as work in progress, not finished either
    assert set(State) == ACTIVE | TERMINAL | {S.FAILING}


def test_mermaid_has_one_line_per_transition():
    lines = mermaid().splitlines()
    assert lines[0] == "stateDiagram-v2"
    for (src, event), (dst, _) in TRANSITIONS.items():
        assert lines.count(f"    {src.value} --> {dst.value}: {event.value}") == 1
    edges = [line for line in lines if ": " in line]
    assert len(edges) == len(TRANSITIONS)
    assert "    [*] --> waiting" in lines
    for state in TERMINAL:
        assert f"    {state.value} --> [*]" in lines
