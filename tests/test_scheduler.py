"""Which request goes next, decided from explicit times and small views (no clock, no sleep)."""

import pytest

from watchd.scheduler import (
    FOLDER_SAMPLES,
    IDLE,
    MIN_SAMPLES,
    Candidate,
    Decision,
    DurationModel,
    Kind,
    Scheduler,
    Task,
)

POLL_INTERVAL = 2.0


def model_with(samples: dict[str, list[float]]) -> DurationModel:
    model = DurationModel()
    for folder, seconds in samples.items():
        for s in seconds:
            model.observe(folder, s)
    return model


def scheduler(
    max_in_flight: int = 4, model: DurationModel | None = None, poll_interval=POLL_INTERVAL
) -> Scheduler:
    return Scheduler(
        max_in_flight=max_in_flight, poll_interval=poll_interval, model=model or DurationModel()
    )


def task(
    job_id: int,
    next_poll_at: float,
    folder: str = "a",
    submitted_at: float = 0.0,
    last_poll_at: float | None = None,
) -> Task:
    return Task(job_id, folder, submitted_at, next_poll_at, last_poll_at)


# Ten tasks of folder "a" that took 10..19 s: the 90% quantile is 18 s, the 95% one 19 s.
TEN = {"a": [float(s) for s in range(10, 20)]}


# -- the duration model -----------------------------------------------------------------


def test_the_model_uses_the_folders_own_times_once_it_has_enough():
    model = model_with({"a": [10.0] * FOLDER_SAMPLES, "b": [100.0] * FOLDER_SAMPLES})
    assert model.quantile("a", 0.9) == 10.0
    assert model.quantile("b", 0.9) == 100.0


def test_the_model_falls_back_to_all_folders_for_a_folder_with_few_samples():
    model = model_with({"a": [10.0] * FOLDER_SAMPLES, "b": [100.0] * (FOLDER_SAMPLES - 1)})
    assert model.quantile("b", 0.0) == 10.0  # the pooled times, not b's own few
    assert model.quantile("new", 0.0) == 10.0
    assert model.quantile("b", 1.0) == 100.0


def test_the_model_knows_nothing_below_min_samples():
    model = model_with({"a": [10.0] * (MIN_SAMPLES - 1)})
    assert model.quantile("a", 0.9) is None
    model.observe("a", 11.0)
    assert model.quantile("a", 0.9) is not None


def test_the_model_quantiles_are_of_the_sorted_times():
    model = model_with({"a": [19.0, 10.0, 15.0, 11.0, 18.0, 12.0, 17.0, 13.0, 16.0, 14.0]})
    assert model.quantile("a", 0.0) == 10.0
    assert model.quantile("a", 0.9) == 18.0
    assert model.quantile("a", 1.0) == 19.0


def test_the_model_forgets_old_times_beyond_its_window():
    model = DurationModel(window=MIN_SAMPLES)
    for _ in range(MIN_SAMPLES):
        model.observe("a", 100.0)
    for _ in range(MIN_SAMPLES):
        model.observe("a", 5.0)
    assert model.quantile("a", 1.0) == 5.0


# -- when to poll -----------------------------------------------------------------------


def test_under_contention_the_first_poll_waits_for_the_95pct_time_of_the_folder():
    s = scheduler(model=model_with(TEN))
    assert s.next_poll_at(100.0, "a", submitted_at=100.0, polls_done=0, contended=True) == 119.0


def test_the_deferred_first_poll_counts_from_the_create_not_from_now():
    s = scheduler(model=model_with(TEN))
    assert s.next_poll_at(105.0, "a", submitted_at=100.0, polls_done=0, contended=True) == 119.0


def test_after_a_pending_poll_the_task_is_polled_every_interval():
    s = scheduler(model=model_with(TEN))
    assert s.next_poll_at(118.0, "a", submitted_at=100.0, polls_done=1, contended=True) == 120.0
    assert s.next_poll_at(120.0, "a", submitted_at=100.0, polls_done=2, contended=True) == 122.0


def test_without_samples_the_first_poll_is_one_interval_away():
    s = scheduler()
    assert s.next_poll_at(100.0, "a", submitted_at=100.0, polls_done=0, contended=True) == 102.0


def test_without_contention_polls_are_every_interval_even_with_a_model():
    s = scheduler(model=model_with(TEN))
    assert s.next_poll_at(100.0, "a", submitted_at=100.0, polls_done=0, contended=False) == 102.0


def test_a_model_faster_than_the_interval_never_polls_sooner_than_the_interval():
    s = scheduler(model=model_with({"a": [0.5] * 10}))
    assert s.next_poll_at(100.0, "a", submitted_at=100.0, polls_done=0, contended=True) == 102.0


def test_a_new_folder_borrows_the_other_folders_times():
    s = scheduler(model=model_with(TEN))
    assert s.next_poll_at(0.0, "new", submitted_at=0.0, polls_done=0, contended=True) == 19.0


# -- what goes next ---------------------------------------------------------------------


def test_nothing_to_do_is_idle():
    assert scheduler().pick(0.0, [], [], in_flight=0, contended=False) == IDLE
    assert Decision(Kind.IDLE) == IDLE


def test_a_waiting_job_is_created():
    d = scheduler().pick(0.0, [Candidate(7, "a")], [], in_flight=0, contended=False)
    assert d == Decision(Kind.CREATE, 7, "a")


def test_a_due_poll_goes_before_a_create():
    s = scheduler()
    d = s.pick(10.0, [Candidate(7, "a")], [task(1, next_poll_at=10.0)], 1, contended=True)
    assert d == Decision(Kind.POLL, 1, "a")


def test_due_polls_go_oldest_due_first():
    s = scheduler()
    tasks = [task(3, next_poll_at=9.0), task(2, next_poll_at=5.0), task(1, next_poll_at=9.0)]
    assert s.pick(10.0, [], tasks, 3, contended=True).job_id == 2
    assert s.pick(10.0, [], [tasks[0], tasks[2]], 3, contended=True).job_id == 1  # tie: lower id


def test_creates_are_never_starved_by_due_polls():
    """Many due polls and waiting creates: at most two polls in a row before a create."""
    s = scheduler(max_in_flight=100)
    tasks = [task(i, next_poll_at=float(i % 3)) for i in range(1, 13)]
    waiting = list(range(100, 110))
    kinds = []
    for _ in range(18):
        d = s.pick(10.0, [Candidate(waiting[0], "a")], tasks, len(tasks), contended=True)
        kinds.append(d.kind)
        if d.kind is Kind.POLL:
            tasks = [t for t in tasks if t.job_id != d.job_id]  # in work, as the engine does
        else:
            waiting.pop(0)
    assert kinds == [Kind.POLL, Kind.POLL, Kind.CREATE] * 6


def test_due_polls_run_back_to_back_when_no_create_can_go():
    s = scheduler(max_in_flight=2)
    tasks = [task(i, next_poll_at=0.0) for i in range(1, 6)]
    kinds = []
    for _ in range(5):
        d = s.pick(10.0, [Candidate(100, "a")], tasks, in_flight=2, contended=True)
        kinds.append(d.kind)
        tasks = [t for t in tasks if t.job_id != d.job_id]
    assert kinds == [Kind.POLL] * 5


def test_a_create_after_a_poll_streak_resets_the_streak():
    s = scheduler()
    due = [task(i, next_poll_at=0.0) for i in range(1, 10)]
    cand = [Candidate(100, "a")]
    # no create possible for a while: the streak grows past two
    for t in due[:4]:
        assert s.pick(10.0, cand, [t], in_flight=4, contended=True).kind is Kind.POLL
    assert s.pick(10.0, cand, due[4:], in_flight=1, contended=True).kind is Kind.CREATE
    assert s.pick(10.0, cand, due[4:], in_flight=1, contended=True).kind is Kind.POLL
    assert s.pick(10.0, cand, due[5:], in_flight=1, contended=True).kind is Kind.POLL
    assert s.pick(10.0, cand, due[6:], in_flight=1, contended=True).kind is Kind.CREATE


def test_max_in_flight_holds_creates_back():
    s = scheduler(max_in_flight=3)
    cand = [Candidate(100, "a")]
    assert s.pick(0.0, cand, [], in_flight=3, contended=False) == IDLE
    assert s.pick(0.0, cand, [], in_flight=4, contended=False) == IDLE
    assert s.pick(0.0, cand, [], in_flight=2, contended=False).kind is Kind.CREATE


def serve(s: Scheduler, queues: dict[str, list[int]], picks: int, step: float) -> list[str]:
    """Pick creates from per-folder queues (the oldest job of each folder is the candidate)."""
    order = []
    for i in range(picks):
        cands = [Candidate(q[0], folder) for folder, q in queues.items() if q]
        d = s.pick(i * step, cands, [], in_flight=0, contended=True)
        assert d.kind is Kind.CREATE and d.folder is not None
        assert queues[d.folder].pop(0) == d.job_id
        order.append(d.folder)
    return order


def test_creates_take_turns_across_folders_despite_an_older_backlog():
    s = scheduler(max_in_flight=1_000)
    queues = {"old": list(range(1, 101)), "new": list(range(101, 106)), "mid": [50_000]}
    order = serve(s, queues, picks=11, step=0.5)
    assert order == ["old", "new", "mid", "old", "new", "old", "new", "old", "new", "old", "new"]


def test_creates_take_turns_even_within_one_instant():
    """Turns follow the order of service, not the clock's resolution."""
    s = scheduler(max_in_flight=1_000)
    queues = {"a": list(range(1, 50)), "b": list(range(100, 150))}
    assert serve(s, queues, picks=6, step=0.0) == ["a", "b", "a", "b", "a", "b"]


def test_a_folder_that_appears_later_is_served_next():
    s = scheduler(max_in_flight=1_000)
    queues = {"a": list(range(1, 50))}
    assert serve(s, queues, picks=3, step=1.0) == ["a", "a", "a"]
    queues["b"] = [500]
    assert serve(s, queues, picks=2, step=1.0) == ["b", "a"]


# -- eager polls ------------------------------------------------------------------------


def test_with_budget_to_spare_a_deferred_task_is_polled_after_an_interval():
    s = scheduler()
    deferred = task(1, next_poll_at=118.0, submitted_at=100.0)
    assert s.pick(101.9, [], [deferred], 1, contended=False) == IDLE
    assert s.pick(102.0, [], [deferred], 1, contended=False) == Decision(Kind.POLL, 1, "a")


def test_no_eager_polls_under_contention():
    s = scheduler()
    deferred = task(1, next_poll_at=118.0, submitted_at=100.0)
    assert s.pick(110.0, [], [deferred], 1, contended=True) == IDLE


def test_eager_polls_count_the_interval_from_the_last_poll():
    s = scheduler()
    polled = task(1, next_poll_at=118.0, submitted_at=100.0, last_poll_at=109.0)
    assert s.pick(110.0, [], [polled], 1, contended=False) == IDLE
    assert s.pick(111.0, [], [polled], 1, contended=False).kind is Kind.POLL


def test_a_poll_at_time_zero_is_a_poll():
    """Injected clocks start at 0.0: a falsy time is still the time of the last poll."""
    s = scheduler()
    polled = task(1, next_poll_at=50.0, submitted_at=-10.0, last_poll_at=0.0)
    assert s.pick(1.0, [], [polled], 1, contended=False) == IDLE
    assert s.wake_time(1.0, [polled], contended=False) == 2.0


def test_eager_polls_never_go_before_a_create():
    s = scheduler()
    deferred = task(1, next_poll_at=118.0, submitted_at=100.0)
    d = s.pick(110.0, [Candidate(9, "b")], [deferred], 1, contended=False)
    assert d == Decision(Kind.CREATE, 9, "b")


# -- when to look again -----------------------------------------------------------------


def test_wake_time_is_the_next_due_poll_under_contention():
    s = scheduler()
    tasks = [task(1, next_poll_at=118.0, submitted_at=100.0), task(2, 130.0, submitted_at=101.0)]
    assert s.wake_time(105.0, tasks, contended=True) == 118.0


def test_wake_time_includes_eager_polls_without_contention():
    s = scheduler()
    tasks = [task(1, next_poll_at=118.0, submitted_at=100.0), task(2, 130.0, submitted_at=101.0)]
    assert s.wake_time(100.5, tasks, contended=False) == 102.0


def test_no_tasks_no_wake_time():
    assert scheduler().wake_time(0.0, [], contended=False) is None


@pytest.mark.parametrize("contended", [True, False])
def test_a_pick_at_the_wake_time_is_not_idle(contended):
    """The engine sleeps until wake_time: by then, a poll must be ready to go."""
    s = scheduler(model=model_with(TEN))
    tasks = [task(1, next_poll_at=118.0, submitted_at=100.0, last_poll_at=None)]
    wake = s.wake_time(100.0, tasks, contended)
    assert wake is not None
    assert s.pick(wake, [], tasks, 1, contended).kind is Kind.POLL


def test_with_nothing_learned_polls_back_off_under_contention() -> None:
    """No samples yet and the budget is short: 1, 2, 4, 8, 8 × poll_interval, not a token a
    second for every young task."""
    s = scheduler()
    gaps = [s.next_poll_at(100.0, "a", 100.0, polls, contended=True) - 100.0 for polls in range(5)]
    assert gaps == [POLL_INTERVAL * k for k in (1, 2, 4, 8, 8)]
    assert s.next_poll_at(100.0, "a", 100.0, 3, contended=False) == 100.0 + POLL_INTERVAL


def test_after_the_first_poll_a_learned_task_is_polled_every_interval() -> None:
    s = scheduler(model=model_with({"a": [10.0] * MIN_SAMPLES}))
    assert s.next_poll_at(0.0, "a", 0.0, 0, contended=True) == 10.0
    assert s.next_poll_at(10.0, "a", 0.0, 1, contended=True) == 10.0 + POLL_INTERVAL


def test_once_a_time_is_learned_early_tasks_wait_for_it_too() -> None:
    """A task polled by the backoff before anything was learned is not polled again before
    the learned time, whatever its poll count."""
    s = scheduler(model=model_with({"a": [10.0] * MIN_SAMPLES}))
    assert s.next_poll_at(5.0, "a", 0.0, polls_done=2, contended=True) == 10.0
