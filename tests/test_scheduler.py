"""Which request goes next and when a task will likely be done, decided from explicit times
and answers (no clock, no sleep)."""

import math
import random

import pytest

from watchd.scheduler import (
    FOLDER_SAMPLES,
    IDLE,
    MAX_POLLS_IN_A_ROW,
    PRIOR_POLLS,
    STRETCH_SAMPLES,
    ApiClock,
    Candidate,
    Decision,
    DurationModel,
    Kind,
    Progress,
    Scheduler,
    Task,
    learned_seconds,
)
from watchd.sim.tasks import TaskPlan, timeline_fields

POLL_INTERVAL = 1.0
EPOCH = 1_780_000_000.37  # the API's clock at local time 0 (a fraction: stamps round down)


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
    next_poll_at: float = 0.0,
    folder: str = "a",
    submitted_at: float = 0.0,
    last_poll_at: float | None = None,
) -> Task:
    return Task(job_id, folder, submitted_at, next_poll_at, last_poll_at)


def answer(plan: TaskPlan, at: float) -> tuple[int, int, dict]:
    """What a query at `at` answers for `plan`, as the simulator words it."""
    raw = timeline_fields(plan, at, EPOCH)
    return raw["state"], raw["progress"], raw


def tell(s: Scheduler, job_id: int, plan: TaskPlan, at: float, folder: str = "a") -> float:
    state, progress, raw = answer(plan, at)
    assert state != 1, "the task was already done"
    return s.pending(job_id, folder, at, Progress.of(state, progress, raw))


def view(s: Scheduler, job_id: int, submitted_at: float = 0.0, last_poll_at=None, folder="a"):
    return s._view(task(job_id, 0.0, folder, submitted_at, last_poll_at))


# Ten tasks of folder "a" that took 10..19 s.
TEN = {"a": [float(s) for s in range(10, 20)]}


# -- what one answer says ---------------------------------------------------------------------


def test_an_answer_is_read_into_state_progress_elapsed_and_timestamps():
    raw = {"time_elapsed": "4.250", "created_at": "1000", "processed_at": "1002"}
    p = Progress.of(4, 37, raw)
    assert (p.state, p.percent, p.elapsed, p.created, p.begun) == (4, 37, 4.25, 1000, 1002)
    assert p.resolution == 1.0
    assert p.started == (1.0, 3.0)  # both stamps rounded down: off by up to a second each way


def test_precise_timestamps_give_a_precise_start():
    p = Progress.of(4, 10, {"created_at": "1000.250", "processed_at": "1002.000"})
    assert p.resolution == 0.001
    assert p.started == pytest.approx((1.749, 1.751))
    ms = Progress.of(4, 10, {"created_at": 1_780_000_000_250, "processed_at": 1_780_000_002_000})
    assert ms.started == pytest.approx((1.749, 1.751))
    iso = {"created_at": "2026-11-26T10:00:00Z", "processed_at": "2026-11-26T10:00:02Z"}
    iso = Progress.of(4, 10, iso)
    assert iso.started == (1.0, 3.0)


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"time_elapsed": "soon", "created_at": "yesterday", "processed_at": []},
        {"time_elapsed": "nan", "created_at": "inf", "processed_at": "-5"},
        {"time_elapsed": -3, "created_at": True, "processed_at": False},
        {"time_elapsed": "1e300", "created_at": "1000", "processed_at": "900"},  # start < create
        {"time_elapsed": 0, "created_at": "1000", "processed_at": "1000000"},  # a 11-day queue
    ],
)
def test_bad_fields_are_read_as_missing_never_as_an_error(raw):
    p = Progress.of(4, 50, raw)
    assert p.elapsed is None and p.started is None
    assert p.percent == 50


@pytest.mark.parametrize(("state", "progress"), [(0, 30), (4, 0), (4, 100), (4, None), (2, -7)])
def test_a_percentage_is_kept_only_while_processing_and_between_1_and_99(state, progress):
    assert Progress.of(state, progress, {}).percent is None


def test_a_queued_answer_has_no_start():
    assert Progress.of(0, 0, {"created_at": "1000", "processed_at": "1001"}).started is None


def test_learned_seconds_come_from_the_api_not_from_a_late_first_poll():
    # The API's own time_elapsed (seconds, or milliseconds when over 1000) comes first.
    assert learned_seconds({"time_elapsed": "9.512", "created_at": "100"}, 0, None, 1) == 9.512
    assert learned_seconds({"time_elapsed": 9512}, 0, None, 1) == 9.512
    # Else its timestamps, as epoch seconds (strings), milliseconds or ISO dates.
    assert learned_seconds({"created_at": "100.0", "completed_at": "109.5"}, 0, None, 500) == 9.5
    ms = {"created_at": 1_795_000_000_000, "completed_at": 1_795_000_009_500}
    assert learned_seconds(ms, 0, None, 1) == 9.5
    iso = {"created_at": "2026-11-26T10:00:00Z", "completed_at": "2026-11-26T10:00:12Z"}
    assert learned_seconds(iso, 0, None, 1) == 12
    # Without them: the middle between the last pending poll and the poll that found it done.
    assert learned_seconds({}, 100.0, 108.0, 110.0) == 9.0
    # A first poll that found it done says only "at most": nothing is learned.
    assert learned_seconds({}, 100.0, None, 121.0) is None


# -- the API's clock ----------------------------------------------------------------------------


def test_the_api_clock_is_pinned_by_the_creates_whole_seconds():
    clock = ApiClock()
    assert clock.local(1000.0, 1.0) is None
    rng = random.Random(3)
    offset = 1_780_000_000.37
    for _ in range(200):
        created = rng.uniform(0, 500)
        clock.learn(created, math.floor(created + offset), 1.0)
    assert clock.low is not None
    assert clock.low <= offset <= clock.high
    assert clock.high - clock.low < 0.15  # the slack for the answer's way back, and little more
    low, high = clock.local(math.floor(offset + 42.0), 1.0)
    assert low <= 42.0 <= high and high - low < 1.2


def test_an_api_clock_that_steps_is_learned_again():
    clock = ApiClock()
    for t in (0.1, 0.4, 0.7):
        clock.learn(t, math.floor(t + 1000.5), 1.0)
    clock.learn(5.0, math.floor(5.0 + 2000.5), 1.0)  # an hour later on its clock
    assert clock.low <= 2000.5 <= clock.high


# -- what finished tasks took -------------------------------------------------------------------


def test_the_model_uses_the_folders_own_times_once_it_has_enough():
    model = model_with({"a": [10.0] * FOLDER_SAMPLES, "b": [100.0] * FOLDER_SAMPLES})
    assert model.quantile("a", 0.9) == 10.0
    assert model.quantile("b", 0.9) == 100.0
    assert model.spread("a").median == 10.0 and model.spread("b").median == 100.0


def test_a_new_folder_starts_from_everyones_times():
    model = model_with({"a": [10.0] * FOLDER_SAMPLES, "b": [100.0] * (FOLDER_SAMPLES - 1)})
    assert model.spread("new") == model.spread(None)
    assert model.spread("b") == model.spread(None)  # too few of its own yet
    assert model.quantile("new", 0.0) == 10.0


def test_the_model_knows_nothing_before_the_first_time():
    model = DurationModel()
    assert model.spread("a") is None and model.quantile("a", 0.9) is None
    model.observe("a", 11.0)
    assert model.spread("a") is not None


def test_few_samples_give_a_wide_window_and_more_samples_a_narrow_one():
    rng = random.Random(1)
    model = DurationModel()
    model.observe("a", 10.0)
    one = model.spread("a")
    assert one.low <= 8.0 and one.high >= 12.0  # one sample says little about the spread
    for _ in range(199):
        model.observe("a", rng.uniform(8, 12))
    many = model.spread("a")
    assert 7.5 < many.low < 8.5 and 11.5 < many.high < 12.5


def test_the_model_ignores_impossible_times_and_forgets_old_ones():
    model = DurationModel(window=4)
    for bad in (-1.0, math.nan, math.inf):
        model.observe("a", bad)
    assert model.spread("a") is None
    for s in (100.0, 100.0, 100.0, 100.0, 5.0, 5.0, 5.0, 5.0):
        model.observe("a", s)
    assert model.quantile("a", 1.0) == 5.0


def test_the_progress_clock_is_trusted_until_tasks_outlast_it():
    model = DurationModel()
    for _ in range(STRETCH_SAMPLES):
        model.check_progress("a", 0.9)
    assert model.stretch("a") == 1.0
    for _ in range(3 * STRETCH_SAMPLES):
        model.check_progress("a", 2.0)  # finished twice as late as its progress said
    assert model.stretch("a") == pytest.approx(2.0)
    assert model.stretch("new") == pytest.approx(2.0)  # a new folder borrows it too
    model.check_progress("a", math.nan)
    model.check_progress("a", 1e9)
    assert model.stretch("a") <= 4.0


# -- one task's window --------------------------------------------------------------------------


def plans(n: int, seed: int, lo: float = 8.0, hi: float = 12.0) -> list[TaskPlan]:
    rng = random.Random(seed)
    return [TaskPlan(f"t{i}", rng.uniform(0, 50), rng.uniform(lo, hi), 1, 1) for i in range(n)]


def test_one_answer_while_processing_gives_a_window_around_the_finish():
    """Cold (nothing learned): the window from one answer holds the true finish, and its
    latest time is not far beyond it."""
    widths = []
    for i, plan in enumerate(plans(300, seed=5)):
        s = scheduler()
        s.created(i, "a", plan.created + 0.005)
        at = plan.started + random.Random(i).uniform(0.3, 0.9) * (plan.finished - plan.started)
        tell(s, i, plan, at)
        v = view(s, i, plan.created, at)
        assert v.low - 0.01 <= plan.finished <= v.sure, (plan, v)
        widths.append(v.sure - plan.finished)
    assert sorted(widths)[len(widths) // 2] < 1.5


def test_two_answers_while_processing_give_a_narrow_window():
    for i, plan in enumerate(plans(300, seed=6)):
        s = scheduler()
        s.created(i, "a", plan.created + 0.005)
        span = plan.finished - plan.started
        first, second = plan.started + 0.2 * span, plan.started + 0.7 * span
        tell(s, i, plan, first)
        tell(s, i, plan, second)
        v = view(s, i, plan.created, second)
        assert v.low - 0.01 <= plan.finished <= v.sure, (plan, v)
        assert v.sure - plan.finished < 0.5


def test_a_learned_api_clock_narrows_the_start_of_processing():
    """Whole-second stamps: alone, the start is known within two seconds; once the API's
    clock is pinned by many creates, within about one."""
    rng = random.Random(8)
    fresh, learned = scheduler(), scheduler()
    for i in range(100):
        plan = TaskPlan(f"w{i}", rng.uniform(0, 500), 10.0, 1, 1)
        learned.created(1000 + i, "a", plan.created)
        tell(learned, 1000 + i, plan, plan.created + 1.0)
    plan = TaskPlan("t", 600.0, 10.0, 1, 1)
    for s in (fresh, learned):
        s.created(1, "a", plan.created)
        tell(s, 1, plan, plan.created + 5.0)
    wide, narrow = fresh._tracks[1].began, learned._tracks[1].began
    assert wide[1] - wide[0] == pytest.approx(2.0, abs=0.01)
    assert narrow[1] - narrow[0] < 1.2
    assert narrow[0] <= plan.started - plan.created <= narrow[1]


def test_an_earlier_queued_answer_bounds_the_start_of_processing():
    s = scheduler()
    plan = TaskPlan("t", 0.0, 10.0, 1, 1)  # processing from 2.0 s on
    s.created(1, "a", 0.0)
    tell(s, 1, plan, 1.9)  # still queued
    tell(s, 1, plan, 4.0)
    assert s._tracks[1].began[0] >= 1.9


def test_a_queued_answer_puts_the_window_past_a_whole_processing_time():
    s = scheduler(model=model_with({"a": [10.0] * 20}))
    s.created(1, "a", 0.0)
    s.pending(1, "a", 30.0, Progress.of(0, 0, {"time_elapsed": "30.0"}))  # a long API queue
    v = view(s, 1, 0.0, 30.0)
    assert v.sure >= 30.0 + 8.0  # most of a processing time still ahead


def test_a_task_later_than_everything_learned_is_polled_with_backoff():
    s = scheduler(model=model_with({"a": [10.0] * 20}))
    s.created(1, "a", 0.0)
    gaps = []
    at = 30.0
    for _ in range(5):
        s.pending(1, "a", at, Progress.of(4, None, {"time_elapsed": f"{at}"}))
        nxt = view(s, 1, 0.0, at).sure
        gaps.append(round(nxt - at, 2))
        at = nxt
    assert gaps == [POLL_INTERVAL * k for k in (1, 2, 4, 8, 8)]


def test_learned_times_and_the_tasks_own_progress_agree_into_a_narrower_window():
    model = model_with({"a": [8.0, 9.0, 10.0, 11.0, 12.0] * 10})
    s = scheduler(model=model)
    plan = TaskPlan("t", 0.0, 9.0, 1, 1)
    s.created(1, "a", 0.005)
    before = view(s, 1, 0.0)
    tell(s, 1, plan, 6.0)
    after = view(s, 1, 0.0, 6.0)
    assert after.sure - after.low < before.sure - before.low
    assert after.low - 0.01 <= plan.finished <= after.sure


def test_a_task_much_slower_than_its_folder_is_read_from_its_own_progress():
    """Learned: about 10 s. This task takes 40: its progress, not the model, sets the poll."""
    s = scheduler(model=model_with({"a": [10.0] * 20}))
    plan = TaskPlan("t", 0.0, 40.0, 1, 1)
    s.created(1, "a", 0.005)
    tell(s, 1, plan, 20.0)
    v = view(s, 1, 0.0, 20.0)
    assert plan.finished <= v.sure < plan.finished + 8.0


def test_progress_that_lies_is_stretched_once_the_lie_is_learned():
    """An API whose percentage runs ahead of the time (here: it says 2× the share done)."""
    model = DurationModel()
    s = scheduler(model=model)

    def lying(at: float, plan: TaskPlan) -> Progress:
        share = (at - plan.created) / plan.duration
        return Progress.of(4, min(99, int(200 * share)), {"time_elapsed": f"{at - plan.created}"})

    late = []
    for i in range(12):
        plan = TaskPlan(f"t{i}", 100.0 * i, 10.0, 1, 1)
        s.created(i, "a", plan.created)
        s.pending(i, "a", plan.created + 2.0, lying(plan.created + 2.0, plan))
        late.append(plan.finished > view(s, i, plan.created, plan.created + 2.0).sure)
        s.finished(i, "a", plan.finished, {"time_elapsed": "10.0"}, plan.created)
    assert late[0] and not any(late[-4:])


# -- what goes next -----------------------------------------------------------------------------


def test_nothing_to_do_is_idle_without_a_wake_time():
    assert scheduler().pick(0.0, [], [], 0) == IDLE
    assert scheduler().wake_time(0.0, []) is None
    assert Decision(Kind.IDLE) == IDLE


def test_a_waiting_job_is_created():
    d = scheduler().pick(0.0, [Candidate(7, "a")], [], in_flight=0)
    assert d == Decision(Kind.CREATE, 7, "a")


def due_task(s: Scheduler, job_id: int, now: float) -> Task:
    """A task created long ago with a learned model: surely done by `now`."""
    s.created(job_id, "a", now - 100.0)
    return task(job_id, submitted_at=now - 100.0)


def test_a_due_poll_goes_before_a_create_when_the_batch_is_large():
    s = scheduler(model=model_with(TEN))
    t = due_task(s, 1, 200.0)
    d = s.pick(200.0, [Candidate(7, "a")], [t], 1, waiting=500, rate=2.0)
    assert d == Decision(Kind.POLL, 1, "a")


def test_creates_go_first_when_the_batch_is_small():
    """A few images left: the last create is the slow path (it still needs a task's time),
    so no poll may delay it."""
    s = scheduler(model=model_with(TEN))
    t = due_task(s, 1, 200.0)
    d = s.pick(200.0, [Candidate(7, "a")], [t], 1, waiting=5, rate=2.0)
    assert d == Decision(Kind.CREATE, 7, "a")


def test_a_count_of_waiting_jobs_capped_at_enough_changes_nothing():
    s = scheduler(model=model_with(TEN))
    t = due_task(s, 1, 200.0)
    cap = s.enough_waiting(2.0)
    assert 20 < cap < 100
    for waiting in (cap - 1, cap, 10 * cap):
        d = s.pick(200.0, [Candidate(7, "a")], [t], 1, waiting=waiting, rate=2.0)
        assert d.kind is Kind.POLL
        s._polls_in_a_row = 0


def test_due_polls_go_most_overdue_first():
    s = scheduler(model=model_with(TEN))
    for job_id, created in ((1, 50.0), (2, 10.0), (3, 50.0)):
        s.created(job_id, "a", created)
    tasks = [task(j, submitted_at=c) for j, c in ((3, 50.0), (2, 10.0), (1, 50.0))]
    assert s.pick(100.0, [], tasks, 3).job_id == 2
    assert s.pick(100.0, [], [tasks[0], tasks[2]], 3).job_id == 1  # a tie: the lower id


def test_creates_are_never_starved_by_due_polls():
    """Many due polls and waiting creates: at most two polls in a row before a create."""
    s = scheduler(max_in_flight=100, model=model_with(TEN))
    tasks = [due_task(s, i, 200.0) for i in range(1, 13)]
    waiting = list(range(100, 110))
    kinds = []
    for _ in range(18):
        d = s.pick(200.0, [Candidate(waiting[0], "a")], tasks, len(tasks), waiting=500, rate=2)
        kinds.append(d.kind)
        if d.kind is Kind.POLL:
            tasks = [t for t in tasks if t.job_id != d.job_id]  # in work, as the engine does
        else:
            waiting.pop(0)
    assert MAX_POLLS_IN_A_ROW == 2
    assert kinds == [Kind.POLL, Kind.POLL, Kind.CREATE] * 6


def test_due_polls_run_back_to_back_when_no_create_can_go():
    s = scheduler(max_in_flight=2, model=model_with(TEN))
    tasks = [due_task(s, i, 200.0) for i in range(1, 6)]
    kinds = []
    for _ in range(5):
        d = s.pick(200.0, [Candidate(100, "a")], tasks, in_flight=2, waiting=500, rate=2)
        kinds.append(d.kind)
        tasks = [t for t in tasks if t.job_id != d.job_id]
    assert kinds == [Kind.POLL] * 5


def test_max_in_flight_holds_creates_back():
    s = scheduler(max_in_flight=3)
    cand = [Candidate(100, "a")]
    assert s.pick(0.0, cand, [], in_flight=3) == IDLE
    assert s.pick(0.0, cand, [], in_flight=4) == IDLE
    assert s.pick(0.0, cand, [], in_flight=2).kind is Kind.CREATE


def test_the_engines_floor_holds_a_poll_back():
    """After a failed poll the engine writes a backoff into next_poll_at: it is respected."""
    s = scheduler(model=model_with(TEN))
    s.created(1, "a", 0.0)
    backed_off = task(1, next_poll_at=150.0, submitted_at=0.0, last_poll_at=99.0)
    d = s.pick(100.0, [], [backed_off], 1, rate=2.0)
    assert d.kind is Kind.IDLE and d.wake_at == 150.0
    assert s.pick(150.0, [], [backed_off], 1, rate=2.0).kind is Kind.POLL


def serve(s: Scheduler, queues: dict[str, list[int]], picks: int, step: float) -> list[str]:
    """Pick creates from per-folder queues (the oldest job of each folder is the candidate)."""
    order = []
    for i in range(picks):
        cands = [Candidate(q[0], folder) for folder, q in queues.items() if q]
        d = s.pick(i * step, cands, [], in_flight=0)
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


# -- spare tokens -------------------------------------------------------------------------------


def test_a_spare_token_reads_a_new_task_after_one_interval():
    s = scheduler()
    s.created(1, "a", 100.0)
    t = task(1, submitted_at=100.0)
    assert s.pick(100.9, [], [t], 1, rate=2.0).kind is Kind.IDLE
    d = s.pick(101.0, [], [t], 1, rate=2.0)
    assert d == Decision(Kind.POLL, 1, "a", probe=True)


def test_nothing_learned_and_no_spare_token_the_first_poll_waits_for_the_prior():
    """Creates from the first second on: a task is still polled, PRIOR_POLLS intervals on."""
    s = scheduler(max_in_flight=100)
    s.created(1, "a", 0.0)
    t = task(1)
    late = PRIOR_POLLS * POLL_INTERVAL
    assert s.pick(late - 0.1, [Candidate(9, "a")], [t], 1, waiting=500, rate=2).kind is Kind.CREATE
    assert s.pick(late + 0.1, [Candidate(9, "a")], [t], 1, waiting=500, rate=2).kind is Kind.POLL


def test_probes_never_go_before_a_create():
    s = scheduler()
    s.created(1, "a", 100.0)
    d = s.pick(110.0, [Candidate(9, "b")], [task(1, submitted_at=100.0)], 1, rate=2.0)
    assert d == Decision(Kind.CREATE, 9, "b")


def test_a_new_task_is_read_before_a_read_one_is_polled_again():
    s = scheduler()
    plan = TaskPlan("t", 0.0, 10.0, 1, 1)
    s.created(1, "a", 0.0)
    tell(s, 1, plan, 4.0)
    s.created(2, "a", 3.0)
    tasks = [task(1, submitted_at=0.0, last_poll_at=4.0), task(2, submitted_at=3.0)]
    assert s.pick(7.5, [], tasks, 2, rate=2.0).job_id == 2


def test_a_probe_gives_way_to_a_due_poll_that_would_wait_for_it():
    s = scheduler(model=model_with(TEN))
    s.created(1, "a", 0.0)  # due at 19 s and a bit
    s.created(2, "a", 17.0)  # never read: a probe from 18 s on
    sure = view(s, 1).sure
    tasks = [task(1), task(2, submitted_at=17.0)]
    assert s.pick(sure - 0.1, [], tasks, 2, rate=2.0).kind is Kind.IDLE  # within half a token
    assert s.pick(sure - 0.4, [], tasks, 2, rate=2.0) == Decision(Kind.POLL, 2, "a", probe=True)


def test_a_narrow_window_is_not_probed_but_polled_when_due():
    s = scheduler()
    plan = TaskPlan("t", 0.0, 10.0, 1, 1)
    s.created(1, "a", 0.005)
    tell(s, 1, plan, 4.0)
    tell(s, 1, plan, 8.5)
    v = view(s, 1, 0.0, 8.5)
    assert v.sure - v.low < 0.5
    t = task(1, last_poll_at=8.5)
    d = s.pick(v.low + 0.01, [], [t], 1, rate=2.0)
    assert d.kind is Kind.IDLE and d.wake_at == pytest.approx(v.sure)


def test_without_a_rate_probes_never_wait():
    s = scheduler(model=model_with(TEN))
    s.created(1, "a", 0.0)
    s.created(2, "a", 17.0)
    sure = view(s, 1).sure
    tasks = [task(1), task(2, submitted_at=17.0)]
    assert s.pick(sure - 0.1, [], tasks, 2).kind is Kind.POLL


# -- when to look again -------------------------------------------------------------------------


def test_wake_time_is_the_next_probe_or_due_poll():
    s = scheduler(model=model_with(TEN))
    s.created(1, "a", 100.0)
    s.created(2, "a", 101.0)
    tasks = [task(1, submitted_at=100.0), task(2, submitted_at=101.0)]
    assert s.wake_time(100.5, tasks, rate=2.0) == 101.0  # task 1's first read


def random_state(seed: int) -> tuple[Scheduler, list[Task], float]:
    rng = random.Random(seed)
    model = DurationModel() if rng.random() < 0.3 else model_with(TEN)
    s = scheduler(max_in_flight=8, model=model, poll_interval=rng.choice([0.2, 1.0, 2.0]))
    tasks = []
    now = rng.uniform(0, 60)
    for job_id in range(rng.randint(1, 8)):
        plan = TaskPlan(f"t{job_id}", now - rng.uniform(0, 20), rng.uniform(3, 15), 1, 1)
        s.created(job_id, "a", plan.created)
        last = None
        for _ in range(rng.randint(0, 3)):
            at = rng.uniform(plan.created, min(now, plan.finished - 0.01))
            if last is not None and at <= last:
                continue
            tell(s, job_id, plan, at)
            last = at
        floor = now + rng.uniform(-5, 5) if rng.random() < 0.3 else 0.0
        tasks.append(task(job_id, floor, "a", plan.created, last))
    return s, tasks, now


@pytest.mark.parametrize("seed", range(300))
def test_a_pick_at_the_wake_time_is_not_idle(seed):
    """The engine sleeps until the wake time: by then, a poll must be ready to go; and the
    wake time is never now or earlier (the engine would spin)."""
    s, tasks, now = random_state(seed)
    d = s.pick(now, [], tasks, len(tasks), rate=2.0)
    if d.kind is Kind.IDLE:
        assert d.wake_at is not None and d.wake_at > now
        assert s.pick(d.wake_at, [], tasks, len(tasks), rate=2.0).kind is Kind.POLL


# -- memory -------------------------------------------------------------------------------------


def test_finished_and_forgotten_tasks_leave_no_memory():
    s = scheduler()
    s.created(1, "a", 0.0)
    s.created(2, "a", 0.0)
    assert s.finished(1, "a", 10.0, {"time_elapsed": "9.5"}, 0.0) == 9.5
    s.forget(2)
    s.forget(3)  # unknown: nothing happens
    assert s._tracks == {}
    assert s.model.spread("a").median == 9.5


def test_tasks_never_reported_back_do_not_pile_up():
    s = scheduler(max_in_flight=8)
    for job_id in range(100_000):
        s.created(job_id, "a", float(job_id))
    assert len(s._tracks) <= 4 * 64
    for job_id in range(100_000, 110_000):  # answers for tasks it never saw created
        s.pending(job_id, "a", 0.0, Progress.of(4, 50, {"time_elapsed": "5"}))
    assert len(s._tracks) <= 4 * 64


def test_a_restart_polls_from_the_ledger_times():
    """No memory of a task (a restart): its ledger times and the model decide."""
    s = scheduler(model=model_with(TEN))
    fresh = task(1, submitted_at=100.0)
    assert view(s, 1, 100.0).sure == pytest.approx(100.0 + s.model.spread("a").high + 0.05)
    assert s.pick(100.5, [], [fresh], 1, rate=2.0).kind is Kind.IDLE
    old = task(2, submitted_at=0.0, last_poll_at=90.0)  # polled before the restart
    assert s.pick(100.5, [], [old], 1, rate=2.0).kind is Kind.POLL


def test_an_answer_for_a_task_created_before_a_restart_is_used():
    s = scheduler()
    plan = TaskPlan("t", 0.0, 10.0, 1, 1)
    tell(s, 7, plan, 6.0)  # no created() in this process
    v = view(s, 7, 0.0, 6.0)
    assert v.low - 0.01 <= plan.finished <= v.sure

