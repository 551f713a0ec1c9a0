"""The dashboard over HTTP (httpx against the app, no socket): every page, endpoint and
error, the mutations through the CLI's own functions, and the security rules."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from tests.e2e import drop
from tests.web import close_world, csrf_of, make_world
from watchd import __version__, logs
from watchd.lifecycle import Event


@pytest.fixture
def world(tmp_path: Path):
    w = make_world(tmp_path)
    yield w
    close_world(w)


def test_overview_shows_each_folder_with_counts_in_flight_last_result_and_budget(world) -> None:
    done = world.done_job("products", "mug.png")
    world.waiting_job("products", "lamp.png")
    busy = world.waiting_job("banners", "sneaker.jpg", seed=30)
    world.ledger.commit(busy, Event.SUBMIT, {"attempt": 1}, submitted_at=world.clock.wall())
    world.ledger.commit(busy, Event.CREATED, {"task_id": "t-9"}, task_id="t-9")
    world.clock.advance(42)
    world.failed_job("banners", "bag.png")
    world.live.learned = {"products": 9.5}
    with world.client() as http:
        page = http.get("/")
    assert page.status_code == 200
    text = page.text
    assert f"watchd {__version__}" in text  # the footer says which watchd this is
    for folder in ("products", "banners"):
        assert f'data-folder="{folder}"' in text
    products = text[text.index('data-folder="products"') : text.index('data-folder="banners"')]
    assert "s-done" in products and "s-waiting" in products
    assert f'src="/img/{done}/result1/m"' in products  # the last result as a thumbnail
    banners = text[text.index('data-folder="banners"') :]
    assert "sneaker.jpg" in banners and "42 s" in banners  # in flight, with its age
    assert "of 2 qps" in text and "1.94/s" in text and "9.5 s" in text  # budget, learned time
    assert "Processing failed because the prompt is invalid." in text  # recent failures
    assert 'class="chart"' in text and "1 done, 1 failed" in text  # the last hour's chart


def test_banners_for_the_401_pause_a_folder_pause_and_a_spending_cap(world) -> None:
    world.ledger.set_meta("paused", "HTTP 401 from the API: key refused")
    world.ledger.pause_folder("banners", "new backdrop", by="watchd pause")
    world.live.caps = {"paused": "daily cap of 500 creates reached"}
    with world.client() as http:
        text = http.get("/jobs").text  # on every page, not only the overview
    assert "All submissions are paused." in text and "key refused" in text
    assert "Folder banners is paused" in text and "new backdrop" in text
    assert "daily cap of 500 creates reached" in text


def test_job_page_shows_both_images_with_sizes_what_was_sent_the_task_and_timeline(world) -> None:
    job = world.done_job("products", "mug.png", size=(300, 200), result=(390, 280))
    with world.client() as http:
        page = http.get(f"/job/{job}")
        original = http.get(f"/img/{job}/original/l")
        result = http.get(f"/img/{job}/result1/l")
        full = http.get(f"/img/{job}/result1/full")
    assert page.status_code == 200
    text = page.text
    assert f'src="/img/{job}/original/l"' in text and f'src="/img/{job}/result1/l"' in text
    assert "300×200 PNG" in text and "390×280 PNG" in text
    assert "top 0.2" in text and "bottom 0.2" in text and "studio" in text  # what was sent
    assert f"task-{job}" in text and "Requests spent</dt><dd>2" in text
    for event in ("recorded", "submit", "created", "poll_done", "written", "moved"):
        assert f"<code>{event}</code>" in text
    assert original.headers["content-type"] == "image/jpeg"  # thumbnails: JPEG unless alpha
    assert Image.open(io.BytesIO(result.content)).size == (390, 280)
    assert full.content == (world.root / "products/outbox/mug.png").read_bytes()


def test_job_page_shows_the_error_and_its_code_in_the_api_docs_words(world) -> None:
    job = world.failed_job("banners", "bag.png", reason="task failed (state -7)", code="state -7")
    with world.client() as http:
        text = http.get(f"/job/{job}").text
    assert "task failed (state -7)" in text and "<code>state -7</code>" in text
    assert "Invalid image file (e.g. corrupted image or incorrect format)." in text
    assert f"/job/{job}/retry" in text  # a failed job offers a retry


def test_jobs_page_searches_by_name_folder_state_and_time_and_pages(world) -> None:
    ids = [world.waiting_job("products", f"shot-{i:02d}.png", seed=100 + i) for i in range(60)]
    world.clock.advance(3600)
    late = world.waiting_job("banners", "late-shot.png", seed=999)
    with world.client() as http:
        first = http.get("/jobs").text
        older = re.search(r'href="\?before=(\d+)"', first)
        assert older, "a next page link"
        second = http.get(f"/jobs?before={older.group(1)}").text
        by_name = http.get("/jobs?name=SHOT-0").text
        by_folder = http.get("/jobs?folder=banners").text
        recent = http.get("/jobs?since=30m").text
        waiting_products = http.get("/jobs?state=waiting&folder=products&name=shot-59").text
    shown = lambda text: {int(i) for i in re.findall(r'<td class="num"><a href="/job/(\d+)"', text)}  # noqa: E731
    assert len(shown(first)) == 50 and late in shown(first)
    assert shown(first) | shown(second) == {*ids, late} and not shown(first) & shown(second)
    assert shown(by_name) == set(ids[:10])  # any case, a part of the name
    assert shown(by_folder) == {late}
    assert shown(recent) == {late}
    assert shown(waiting_products) == {ids[59]}


def test_failed_page_filters_by_folder_code_and_reason_and_offers_retry_all(world) -> None:
    a = world.failed_job("products", "a.png", reason="Processing failed.", code="state -1", seed=1)
    b = world.failed_job("banners", "b.png", seed=2)
    c = world.failed_job("banners", "c.png", reason="too small: 20×20", code="too_small", seed=3)
    with world.client() as http:
        every = http.get("/failed").text
        banners = http.get("/failed?folder=banners").text
        code = http.get("/failed?code=state+-17").text
        reason = http.get("/failed?reason=TOO+small").text
    rows = lambda text: {int(i) for i in re.findall(r'<tr data-job="(\d+)"', text)}  # noqa: E731
    assert rows(every) == {a, b, c} and "Retry all 3 shown" in every
    assert rows(banners) == {b, c}
    assert rows(code) == {b} and 'value="state -17" selected' in code
    assert rows(reason) == {c}
    hidden = set(map(int, re.findall(r'name="id" value="(\d+)"', banners)))
    assert hidden == {b, c}  # "retry all shown" posts exactly the jobs shown


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/job/abc", 400, "a job id is a number"),
        ("/job/-1", 400, "a job id is a number"),
        ("/job/99999999999999999999999", 400, "a job id is a number"),
        ("/job/424242", 404, "there is no job 424242"),
        ("/jobs?state=finished", 400, "unknown state"),
        ("/jobs?folder=../etc", 400, "unknown folder"),
        ("/jobs?since=yesterday-ish", 400, "since: a duration like 30m"),
        ("/jobs?before=12x", 400, "a job id is a number"),
        ("/jobs?name=" + "x" * 201, 400, "name is too long"),
        ("/jobs?state=done&state=failed", 400, "given more than once"),
        ("/jobs?name=" + "y" * 3000, 414, "too long"),
        ("/img/1/secrets/s", 400, "the image is one of"),
        ("/img/1/original/xxl", 400, "the size is one of"),
        ("/img/424242/original/s", 404, "there is no job 424242"),
        ("/no/such/page", 404, "Not Found"),
    ],
)
def test_bad_input_gets_a_4xx_with_a_clear_message_never_a_traceback(
    world, path, status, says
) -> None:
    world.done_job("products", "mug.png")
    with world.client() as http:
        answer = http.get(path)
    assert answer.status_code == status
    assert says in answer.text
    assert "Traceback" not in answer.text and 'File "' not in answer.text


def test_retry_from_the_page_puts_the_original_back_through_the_clis_requeue(world) -> None:
    job = world.failed_job("banners", "bag.png")
    done = world.done_job("products", "mug.png")
    with world.client() as http:
        csrf = csrf_of(http.get(f"/job/{job}").text)
        answer = http.post(f"/job/{job}/retry", data={"csrf": csrf, "next": f"/job/{job}"})
        again = http.post(f"/job/{job}/retry", data={"csrf": csrf}, headers={"X-Live": "1"})
        not_failed = http.post(f"/job/{done}/retry", data={"csrf": csrf}, headers={"X-Live": "1"})
        after = http.get(f"/job/{job}")
    assert answer.status_code == 303 and answer.headers["location"] == f"/job/{job}"
    assert "watchd_flash" in answer.headers["set-cookie"]
    assert (world.root / "banners/inbox/bag.png").exists()
    assert not (world.root / "banners/failed/bag.png").exists()
    assert world.writes  # through the daemon's do_write, not a connection of its own
    notes = [e["event"] for e in world.ledger.events_of(job)]
    assert notes[-1] == "retry_requested"
    assert again.json()["ok"] is True  # a second click finds it back already (live.js: JSON)
    assert not_failed.status_code == 409 and not_failed.json()["ok"] is False
    assert f"job {done} is done, not failed" in not_failed.json()["message"]
    assert after.status_code == 200


def test_retry_all_shown_goes_on_past_a_bad_item_and_sums_up(world) -> None:
    a = world.failed_job("banners", "a.png", seed=1)
    b = world.failed_job("banners", "b.png", seed=2)
    os.unlink(world.root / "banners/failed/b.png")  # its original is gone
    c = world.failed_job("banners", "c.png", seed=3)
    with world.client() as http:
        csrf = csrf_of(http.get("/failed").text)
        answer = http.post(
            "/retry", data={"csrf": csrf, "id": [str(a), str(b), str(c)]}, headers={"X-Live": "1"}
        )
        none = http.post("/retry", data={"csrf": csrf, "id": [str(b)]}, headers={"X-Live": "1"})
        bad = http.post("/retry", data={"csrf": csrf, "id": ["1", "x"]}, headers={"X-Live": "1"})
        too_many = http.post(
            "/retry",
            data={"csrf": csrf, "id": [str(i) for i in range(300)]},
            headers={"X-Live": "1"},
        )
    body = answer.json()
    assert body["ok"] is False and body["message"].startswith("2 jobs back in the inbox; 1 not:")
    assert f"job {b}" in body["message"]
    assert (world.root / "banners/inbox/a.png").exists() and (
        world.root / "banners/inbox/c.png"
    ).exists()
    assert none.status_code == 409 and "no job was retried" in none.json()["message"]
    assert bad.status_code == 400 and "a job id is a number" in bad.json()["message"]
    assert too_many.status_code == 400 and "at most 200" in too_many.json()["message"]


def test_pause_and_resume_from_the_page_are_the_ledger_pause(world) -> None:
    with world.client() as http:
        csrf = csrf_of(http.get("/").text)
        paused = http.post(
            "/folder/products/pause", data={"csrf": csrf, "reason": "  new\nbackdrop  "}
        )
        assert world.ledger.paused_folders()["products"]["reason"] == "new backdrop"
        assert world.ledger.paused_folders()["products"]["by"] == "dashboard"
        page = http.get("/").text
        unknown = http.post("/folder/nope/pause", data={"csrf": csrf}, headers={"X-Live": "1"})
        resumed = http.post("/folder/products/resume", data={"csrf": csrf}, headers={"X-Live": "1"})
    assert paused.status_code == 303
    assert "Folder products is paused" in page and "new backdrop" in page
    assert unknown.status_code == 404 and "unknown folder 'nope'" in unknown.json()["message"]
    assert resumed.json() == {"ok": True, "message": "folder products resumed"}
    assert world.ledger.paused_folders() == {}


@pytest.mark.parametrize(
    ("data", "headers", "says"),
    [
        ({}, {}, "CSRF token is missing"),
        ({"csrf": "0" * 64}, {}, "CSRF token is missing or stale"),
        ({"csrf": "GOOD"}, {"Origin": "http://evil.example"}, "came from another site"),
        ({"csrf": "GOOD"}, {"Origin": "null"}, "came from another site"),
        ({"csrf": "GOOD"}, {"Sec-Fetch-Site": "cross-site"}, "came from another site"),
        ({"csrf": "GOOD"}, {"Sec-Fetch-Site": "same-site"}, "came from another site"),
    ],
)
def test_every_mutation_is_a_post_with_a_csrf_token_from_this_site(
    world, data, headers, says
) -> None:
    job = world.failed_job("banners", "bag.png")
    with world.client() as http:
        good = csrf_of(http.get("/").text)
        form = {k: (good if v == "GOOD" else v) for k, v in data.items()}
        for path in (
            f"/job/{job}/retry",
            "/retry",
            "/folder/banners/pause",
            "/folder/banners/resume",
            "/logout",
        ):
            answer = http.post(path, data={**form, "id": str(job)}, headers=headers)
            assert answer.status_code == 403, path
            assert says in answer.text
            assert http.get(path).status_code == 405  # never by GET
    assert (world.root / "banners/failed/bag.png").exists()
    assert world.ledger.paused_folders() == {} and world.writes == []


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:8750", True),
        ("localhost:8750", True),
        ("[::1]:8750", True),
        ("192.168.1.20:8750", True),  # an IP literal cannot be rebound
        ("evil.example:8750", False),
        ("127.0.0.1.nip.io:8750", False),
        ("localhost.evil.example", False),
        ("", False),
        ("a b", False),
    ],
)
def test_the_host_header_is_checked_against_dns_rebinding(world, host, ok) -> None:
    with world.client() as http:
        answer = http.get("/", headers={"Host": host})
        metrics = http.get("/metrics", headers={"Host": host})
    assert (answer.status_code == 200) is ok
    assert (metrics.status_code == 200) is ok
    if not ok:
        assert answer.status_code == 400 and "unknown Host header" in answer.text


def test_a_token_guards_everything_but_healthz_and_the_api_key_never_shows(tmp_path) -> None:
    token = "t0ken-" + "9" * 20
    (tmp_path / "token").write_text(token + "\n")
    w = make_world(tmp_path, listen="0.0.0.0:8750", token_file="token", allowed_hosts=["box.lan"])
    try:
        with w.client(base_url="http://box.lan:8750") as http:
            browser = http.get("/failed?folder=banners", headers={"Accept": "text/html"})
            script = http.get("/metrics")
            health = http.get("/healthz")
            bearer = http.get("/metrics", headers={"Authorization": f"Bearer {token}"})
            login = http.get("/login").text
            wrong = http.post("/login", data={"csrf": csrf_of(login), "token": "nope"})
            right = http.post(
                "/login", data={"csrf": csrf_of(login), "token": token, "next": "/failed"}
            )
            cookie = right.headers["set-cookie"]
            session = cookie.split(";")[0]
            inside = http.get("/", headers={"Cookie": session})
            forged = http.get("/", headers={"Cookie": "watchd_session=" + "a" * 64})
    finally:
        close_world(w)
    assert browser.status_code == 303
    assert browser.headers["location"] == "/login?next=%2Ffailed%3Ffolder%3Dbanners"
    assert script.status_code == 401 and "Bearer" in script.headers["www-authenticate"]
    assert health.status_code == 200
    assert bearer.status_code == 200 and "watchd_jobs" in bearer.text
    assert wrong.status_code == 401 and "not the one in the token file" in wrong.text
    assert right.status_code == 303 and right.headers["location"] == "/failed"
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and token not in cookie
    assert inside.status_code == 200 and forged.status_code == 401
    assert token not in login and token not in inside.text


def test_the_api_key_never_appears_on_any_page_or_endpoint(world) -> None:
    key = "sk-LIVE-KEY-0123456789abcdef"
    logs.add_secret(key)
    try:
        job = world.failed_job("banners", "bag.png", reason=f"refused with {key}", code="http 400")
        world.ledger.note(job, "debug", {"header": f"X-API-KEY: {key}"})
        with world.client() as http:
            answers = [
                http.get(p)
                for p in ("/", "/jobs", "/failed", f"/job/{job}", "/metrics", "/healthz")
            ]
    finally:
        logs._secrets.discard(key)
    for answer in answers:
        assert answer.status_code == 200
        assert key not in answer.text
    assert "refused with ***" in answers[3].text


def test_file_names_are_shown_escaped(world) -> None:
    job = world.failed_job("banners", '<img src=x onerror=alert(1)>".png')
    with world.client() as http:
        text = http.get(f"/job/{job}").text + http.get("/failed").text
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text


def test_pages_refresh_live_regions_with_a_script_the_csp_allows(world) -> None:
    job = world.done_job("products", "mug.png")
    with world.client() as http:
        pages = [http.get(p) for p in ("/", "/jobs", "/failed", f"/job/{job}")]
        script = http.get("/static/live.js")
        style = http.get("/static/style.css")
    for page in pages:
        assert re.search(r'id="[a-z-]+" data-live', page.text)
        assert '<script src="/static/live.js" defer></script>' in page.text
        assert "<script>" not in page.text and " style=" not in page.text  # CSP: no inline
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-frame-options"] == "DENY"
    assert script.status_code == 200 and "data-live" in script.text
    assert style.status_code == 200


def test_healthz_answers_from_the_main_loops_heartbeat(world) -> None:
    with world.client() as http:
        fresh = http.get("/healthz")
        world.clock.advance(world.live.stale_after + 1)  # the loop stopped turning
        stuck = http.get("/healthz")
        page = http.get("/")
        world.live.beat(world.clock.mono())
        again = http.get("/healthz")
    assert fresh.status_code == 200 and fresh.json()["status"] == "ok"
    assert stuck.status_code == 503 and "stuck" in stuck.json()["reason"]
    assert "has not turned" in page.text  # the pages say it too
    assert again.status_code == 200


def test_a_missing_or_broken_ledger_is_a_503_with_the_reason(tmp_path) -> None:
    w = make_world(tmp_path)
    try:
        w.ledger.close()
        (w.cfg.state_dir / "watchd.db").write_bytes(b"this is not a database" * 100)
        for suffix in ("-wal", "-shm"):
            Path(str(w.cfg.state_dir / "watchd.db") + suffix).unlink(missing_ok=True)
        with w.client() as http:
            page = http.get("/jobs")
            health = http.get("/healthz")
    finally:
        w.server._close_threads()
    assert page.status_code == 503 and "cannot read the ledger" in page.text
    assert health.status_code == 200  # the loop is fine; the pages say what is wrong


def test_thumbnails_are_bounded_jpegs_cached_under_state_dir(world) -> None:
    job = world.done_job("products", "big.jpg", size=(3000, 2000), result=(3600, 2400))
    with world.client() as http:
        small = http.get(f"/img/{job}/original/s")
        large = http.get(f"/img/{job}/result1/l")
        cached = http.get(f"/img/{job}/result1/l")
    sizes = [Image.open(io.BytesIO(a.content)).size for a in (small, large)]
    assert small.headers["content-type"] == "image/jpeg" and max(sizes[0]) == 160
    assert max(sizes[1]) == 1200
    assert cached.content == large.content
    made = list((world.cfg.state_dir / "thumbnails").glob("*/*.jpg"))
    assert len(made) == 2


def test_only_ledger_paths_inside_configured_folders_are_served(world, tmp_path) -> None:
    outside = tmp_path / "elsewhere" / "secret.png"
    drop(outside, (100, 100), seed=5)
    job = world.done_job("products", "mug.png")
    link = world.root / "products/done/link.png"
    link.symlink_to(outside)
    text = world.root / "products/done/notes.png"
    text.write_text("not an image")
    cases = {}
    for label, path in {
        "outside": str(outside),
        "dotdot": str(world.root / "products/done/../../elsewhere/secret.png"),
        "symlink": str(link),
        "folder": str(world.root / "products/done"),
        "missing": str(world.root / "products/done/gone.png"),
        "not an image": str(text),
    }.items():
        world.ledger.db.execute("update jobs set path = ? where id = ?", [path, job])
        with world.client() as http:
            cases[label] = (
                http.get(f"/img/{job}/original/s"),
                http.get(f"/img/{job}/original/full"),
            )
    for label, answers in cases.items():
        for answer in answers:
            assert answer.status_code == 404, label
            assert answer.headers["content-type"] == "image/svg+xml", label
    assert b"outside the configured folders" in cases["outside"][0].content
    assert b"outside the configured folders" in cases["symlink"][0].content
    assert not any(b"secret" in a.content for answers in cases.values() for a in answers)


def test_the_thumbnail_cache_keeps_under_its_cap(tmp_path) -> None:
    from watchd.web.thumbs import Thumbnails, allowed_roots

    root = tmp_path / "in"
    for i in range(12):
        drop(root / f"{i}.png", (600, 400), seed=i)
    thumbs = Thumbnails(tmp_path / "cache", cap_bytes=20_000)
    roots = allowed_roots([type("F", (), {"inbox": str(root)})()])
    for i in range(12):
        thumbs.get(str(root / f"{i}.png"), "m", roots)
    total = sum(p.stat().st_size for p in (tmp_path / "cache").rglob("*.*"))
    assert 0 < total <= 20_000


def test_metrics_are_served_in_prometheus_text(world) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    world.done_job("products", "mug.png")
    with world.client() as http:
        answer = http.get("/metrics")
    assert answer.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    jobs = {
        (s.labels["folder"], s.labels["state"]): s.value for s in families["watchd_jobs"].samples
    }
    assert jobs[("products", "done")] == 1 and jobs[("banners", "waiting")] == 0
    assert families["watchd_jobs_finished"].samples[0].value == 1


def test_a_flash_message_shows_once_after_a_form_without_javascript(world) -> None:
    world.failed_job("banners", "bag.png")
    with world.client() as http:
        csrf = csrf_of(http.get("/").text)
        answer = http.post("/folder/banners/pause", data={"csrf": csrf, "next": "/jobs"})
        cookie = answer.headers["set-cookie"].split(";")[0]
        shown = http.get("/jobs", headers={"Cookie": cookie})
        tampered = http.get("/jobs", headers={"Cookie": cookie[:-3] + "abc"})
    assert answer.headers["location"] == "/jobs"
    assert "folder banners paused" in shown.text
    assert (
        "Max-Age=0" in shown.headers["set-cookie"]
        or "expires" in shown.headers["set-cookie"].lower()
    )
    assert "folder banners paused" not in tampered.text


def test_next_after_a_form_never_leaves_the_site(world) -> None:
    with world.client() as http:
        csrf = csrf_of(http.get("/").text)
        for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "evil"):
            answer = http.post("/folder/banners/pause", data={"csrf": csrf, "next": target})
            assert answer.headers["location"] == "/", target


def test_job_json_detail_in_the_timeline_is_readable(world) -> None:
    job = world.failed_job("banners", "bag.png")
    world.ledger.note(job, "step_failed", {"step": "download", "reason": "HTTP 503"})
    with world.client() as http:
        text = http.get(f"/job/{job}").text
    assert "<b>step</b> download" in text and "<b>reason</b> HTTP 503" in text
    assert json.dumps({"step": "download"}) not in text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/jobs?name=%ff%fe%00"),
        ("GET", "/jobs?since=%00"),
        ("GET", "/jobs?until=9999-99-99"),
        ("GET", "/job/%00"),
        ("GET", "/job/1%2F..%2F..%2Fetc%2Fpasswd"),
        ("GET", "/static/../app.py"),
        ("GET", "/static/%2e%2e/app.py"),
        ("GET", "/img/1/result0/s"),
        ("GET", "/img/1/result10/s"),
        ("GET", "/img/1/mask/s"),
        ("GET", "/failed?code=" + "z" * 300),
        ("GET", "/failed?before=0"),
        ("HEAD", "/"),
        ("POST", "/"),
        ("PUT", "/retry"),
        ("DELETE", "/job/1"),
        ("POST", "/login"),
    ],
)
def test_odd_requests_never_crash_the_dashboard(world, method, path) -> None:
    world.done_job("products", "mug.png")
    with world.client() as http:
        answer = http.request(method, path)
        after = http.get("/")
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])
    assert "Traceback" not in answer.text
    assert after.status_code == 200


def test_a_huge_form_is_refused(world) -> None:
    with world.client() as http:
        csrf = csrf_of(http.get("/").text)
        answer = http.post("/folder/products/pause", data={"csrf": csrf, "reason": "x" * 200_000})
    assert answer.status_code == 413
    assert world.ledger.paused_folders() == {}


def test_a_name_that_is_not_utf8_in_the_ledger_still_shows(world) -> None:
    job = world.waiting_job("products", "ok.png")
    world.ledger.db.execute(
        "update jobs set name = cast(x'63616ffe2e706e67' as text) where id = ?", [job]
    )
    world.ledger.db.conn.commit()
    with world.client() as http:
        page = http.get(f"/job/{job}")
        listing = http.get("/jobs")
    assert page.status_code == 200 and "cao\N{REPLACEMENT CHARACTER}.png" in page.text
    assert listing.status_code == 200


def test_a_picture_too_large_to_decode_is_not_previewed(world, monkeypatch) -> None:
    from watchd.web import thumbs

    monkeypatch.setattr(thumbs, "MAX_DECODE", 10_000)
    job = world.done_job("products", "big.png", size=(300, 200))
    with world.client() as http:
        answer = http.get(f"/img/{job}/original/s")
    assert answer.status_code == 404 and b"too large to preview" in answer.content


def test_concurrent_pages_and_mutations_keep_the_ledger_consistent(world) -> None:
    """Many requests at once on one loop: the reader thread serialises the reads, the
    writes run through do_write; every answer is whole and the counts add up."""
    import asyncio

    ids = [world.failed_job("banners", f"f{i}.png", seed=i) for i in range(20)]
    with world.client() as http:
        csrf = csrf_of(http.get("/").text)

        async def burst() -> list[int]:
            calls = [http.http.get(p) for p in ("/", "/jobs", "/failed", "/metrics") * 10]
            calls += [
                http.http.post(f"/job/{i}/retry", data={"csrf": csrf}, headers={"X-Live": "1"})
                for i in ids
            ]
            answers = await asyncio.gather(*calls)
            return [a.status_code for a in answers]

        codes = http.loop.run_until_complete(burst())
    assert set(codes) == {200}
    assert all((world.root / f"banners/inbox/f{i}.png").exists() for i in range(20))


def test_the_login_pages_csrf_token_is_no_good_once_logged_in(tmp_path) -> None:
    token = "t0ken-" + "8" * 20
    (tmp_path / "token").write_text(token)
    w = make_world(tmp_path, listen="0.0.0.0:8750", token_file="token")
    try:
        with w.client() as http:
            public = csrf_of(http.get("/login").text)  # anyone on the network can read this
            login = http.post("/login", data={"csrf": public, "token": token})
            session = login.headers["set-cookie"].split(";")[0]
            inside = csrf_of(http.get("/", headers={"Cookie": session}).text)
            forged = http.post(
                "/folder/products/pause", data={"csrf": public}, headers={"Cookie": session}
            )
            real = http.post(
                "/folder/products/pause", data={"csrf": inside}, headers={"Cookie": session}
            )
    finally:
        close_world(w)
    assert inside != public
    assert forged.status_code == 403
    assert real.status_code == 303
