"""The Jobs and Failed pages with 100,000 jobs in the ledger: every statement they run walks an
index (checked with EXPLAIN QUERY PLAN on what the pages really ran, not with a timer), and
keyset paging returns every match exactly once."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from tests.web import World, close_world, make_world
from watchd.web import queries

N = 100_000
FOLDERS = ("products", "banners", "square", "scans")
STATES = ["done"] * 80 + ["failed"] * 8 + ["waiting"] * 10 + ["processing"] * 2


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory):
    w = make_world(tmp_path_factory.mktemp("big"))
    rng = random.Random(12)
    t0 = w.clock.wall() - N
    rows = []
    for i in range(N):
        state = rng.choice(STATES)
        rows.append(
            (
                rng.choice(FOLDERS),
                f"k{i}",
                f"/srv/in/IMG_{i:06d}.JPG",
                f"IMG_{i:06d}.JPG",
                state,
                t0 + i,
                t0 + i,
                "Processing failed." if state == "failed" else None,
                ("state -1" if i % 2 else "http 400") if state == "failed" else None,
            )
        )
    with w.ledger.atomic():
        w.ledger.db.conn.executemany(
            "insert into jobs (folder, key, path, name, state, created_at, updated_at,"
            " error_reason, error_code) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    yield w, rows
    close_world(w)


def ran(world: World, http, path: str) -> tuple[str, list[str]]:
    """The page's HTML and every SQL statement the dashboard's connection ran for it."""
    seen: list[str] = []
    reader = world.server.reader
    http.loop.run_until_complete(reader.run(lambda conn: conn.set_trace_callback(seen.append)))
    try:
        page = http.get(path)
    finally:
        http.loop.run_until_complete(reader.run(lambda conn: conn.set_trace_callback(None)))
    assert page.status_code == 200, page.text
    return page.text, seen


def plan(world: World, http, sql: str) -> list[str]:
    def explain(conn):
        return [row[3] for row in conn.execute("explain query plan " + sql)]

    return http.loop.run_until_complete(world.server.reader.run(explain))


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?state=failed",
        "?folder=banners",
        "?state=waiting&folder=scans",
        "?name=IMG_0999",
        "?name=no-such-name",
        "?since=3h&name=img",
        "?folder=products&until=1d&before=50000",
        "?state=done&before=7",
    ],
)
def test_every_jobs_page_statement_walks_an_index(big, query) -> None:
    world, _ = big
    with world.client() as http:
        _, statements = ran(world, http, "/jobs" + query)
        job_walks = [s for s in statements if re.search(r"\bfrom jobs\b", s)]
        assert job_walks, statements
        for sql in statements:
            for step in plan(world, http, sql):
                assert "TEMP B-TREE" not in step, (sql, step)
                if re.match(r"SCAN (jobs|events)\b", step):
                    assert "COVERING INDEX" in step, (sql, step)  # the counts, from the index
                if step.startswith("SEARCH jobs"):
                    assert "INDEX" in step or "PRIMARY KEY" in step, (sql, step)


def test_the_failed_page_lists_with_the_same_index_walks(big) -> None:
    world, _ = big
    with world.client() as http:
        _, statements = ran(world, http, "/failed?folder=square&reason=failed")
        lists = [s for s in statements if "order by id desc" in s]
        assert lists
        for sql in lists:
            for step in plan(world, http, sql):
                assert "TEMP B-TREE" not in step and "USING" in step, (sql, step)


def test_keyset_pages_return_every_match_once_newest_first(big) -> None:
    world, rows = big
    want = [i + 1 for i, r in enumerate(rows) if r[0] == "scans" and r[4] == "failed"]
    got: list[int] = []
    f = queries.JobFilter(state="failed", folder="scans")
    with world.client() as http:
        while True:
            page, after = http.loop.run_until_complete(
                world.server.reader.run(queries.job_list, f, 500)
            )
            got += [r["id"] for r in page]
            if after is None:
                break
            f = queries.JobFilter(state="failed", folder="scans", before=after)
    assert got == sorted(want, reverse=True)


def test_a_name_search_over_every_state_and_folder_merges_newest_first(big) -> None:
    world, rows = big
    want = [i + 1 for i, r in enumerate(rows) if "_0123" in r[3]]
    with world.client() as http:
        page, after = http.loop.run_until_complete(
            world.server.reader.run(queries.job_list, queries.JobFilter(name="_0123"), 50)
        )
    assert [r["id"] for r in page] == sorted(want, reverse=True)[:50]
    assert after == page[-1]["id"]


def test_a_like_pattern_in_the_search_is_text_not_a_wildcard(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    try:
        plain = w.waiting_job("products", "100% cotton.png", seed=1)
        w.waiting_job("products", "1000 cotton.png", seed=2)
        under = w.waiting_job("products", "a_b.png", seed=3)
        w.waiting_job("products", "axb.png", seed=4)
        with w.client() as http:
            pct = http.get("/jobs?name=100%25").text
            und = http.get("/jobs?name=a_b").text
    finally:
        close_world(w)
    ids = lambda text: set(map(int, re.findall(r'<td class="num"><a href="/job/(\d+)"', text)))  # noqa: E731
    assert ids(pct) == {plain}
    assert ids(und) == {under}
