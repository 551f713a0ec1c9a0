"""The dashboard's Starlette app: pages, the two mutations, images, /metrics and /healthz.

Handlers are thin: they check the request, read through the `Reader` (its thread), render
a Jinja2 template, and answer. Every failure the user can cause gets a 4xx page with one
clear sentence; anything else is logged and answered 500 without a traceback. Pages work
without JavaScript; `static/live.js` refreshes the regions marked `data-live` and sends
forms marked `data-async` without leaving the page. Mutations run `do_write(fn)`, which the
daemon provides: `fn(ledger)` on its own ledger, in its loop, through the same functions as
the CLI (`requeue`, `pause`, `resume`).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import jinja2
import markupsafe
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from watchd import __version__, logs
from watchd.clock import Clock
from watchd.config import Config
from watchd.ledger import Ledger
from watchd.pause import PauseError, pause, resume
from watchd.report import parse_since
from watchd.requeue import RequeueError, requeue
from watchd.web import queries, views
from watchd.web.live import LiveState
from watchd.web.metrics import Metrics
from watchd.web.reader import LedgerUnavailable, Reader
from watchd.web.security import FLASH_COOKIE, SESSION_COOKIE, Guard
from watchd.web.thumbs import (
    SIZES,
    NotServed,
    Picture,
    Thumbnails,
    allowed_roots,
    open_served,
    read_file,
)

T = TypeVar("T")
Writer = Callable[[Callable[[Ledger], Any]], Any]  # do_write(fn) -> fn(ledger), in the loop

HERE = Path(__file__).parent
MAX_QUERY = 2048  # bytes of query string
MAX_PATH = 1024
MAX_BODY = 64 * 1024
MAX_TEXT = 200  # characters of a search field
MAX_RETRY_IDS = 200
REFRESH_MS = 3000
ROLES = re.compile(r"^(original|mask|result([1-9]))$")
_ID = re.compile(r"^[0-9]{1,18}$")
PUBLIC = ("/healthz", "/login", "/static/")
NO_CODE = "(none)"


@dataclass
class Site:
    """What every handler needs; the server builds one (tests build their own)."""

    cfg: Config
    reader: Reader
    live: LiveState
    metrics: Metrics
    guard: Guard
    thumbs: Thumbnails
    do_write: Writer
    clock: Clock
    images: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="watchd-web-img")
    )

    @property
    def folder_names(self) -> list[str]:
        return [f.name for f in self.cfg.folders]

    async def in_images(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.images, fn, *args)


class BadRequest(HTTPException):
    """A request the user can fix; its detail is shown as is."""


# -- rendering ----------------------------------------------------------------------------

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("watchd.web", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.globals["version"] = __version__  # the footer: which watchd this is
_env.filters.update(
    ago=views.ago,
    clock=views.clock_time,
    iso=views.iso_utc,
    size=views.size,
    qs=lambda params: urlencode({k: v for k, v in params.items() if v not in (None, "")}),
)


def scrub(text: str) -> str:
    """The last line of defence: no known secret (the API key) leaves in a response."""
    for secret in logs.secrets():
        text = text.replace(secret, "***")
    return text


def _banners(conn: Any) -> dict[str, Any]:
    return {"auth_pause": queries.meta(conn, "paused"), "paused": queries.paused_folders(conn)}


async def page(
    request: Request, site: Site, template: str, status: int = 200, **context: Any
) -> Response:
    """A rendered page: the template with the site's chrome (health, pauses, flash)."""
    try:
        banners = await site.reader.run(_banners)
    except LedgerUnavailable as exc:
        banners = {"auth_pause": None, "paused": {}, "ledger_error": str(exc)}
    flash = _take_flash(request, site)
    text = _env.get_template(template).render(
        site=_chrome(request, site),
        banners=banners,
        caps=site.live.caps,
        flash=flash,
        request_path=_here(request),
        csrf=site.guard.csrf(request.cookies.get(SESSION_COOKIE, "")),
        now=site.clock.wall(),
        refresh_ms=REFRESH_MS,
        **context,
    )
    response = Response(
        scrub(text).encode("utf-8", "replace"),
        status_code=status,
        media_type="text/html; charset=utf-8",
    )
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def _chrome(request: Request, site: Site) -> dict[str, Any]:
    healthy, age, why = site.live.health(site.clock.mono())
    return {
        "healthy": healthy,
        "heartbeat_age": age,
        "health": why,
        "token": site.guard.needs_token,
        "path": request.url.path,
    }


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _take_flash(request: Request, site: Site) -> dict[str, Any] | None:
    value = request.cookies.get(FLASH_COOKIE)
    if not value:
        return None
    data = site.guard.unsign(value)
    return data if isinstance(data, dict) else None


def _wants_json(request: Request) -> bool:
    return request.headers.get("x-live") == "1" or "application/json" in request.headers.get(
        "accept", ""
    )


async def _error_response(
    request: Request, site: Site | None, status: int, message: str
) -> Response:
    path = request.url.path
    if path in ("/metrics", "/healthz") or site is None:
        return Response(message + "\n", status_code=status, media_type="text/plain")
    if _wants_json(request) and request.method == "POST":
        return JSONResponse({"ok": False, "message": message}, status_code=status)
    return await page(
        request, site, "error.html", status=status, status_code=status, message=message
    )


# -- parsing ------------------------------------------------------------------------------


def job_id_of(text: str) -> int:
    if not _ID.match(text or ""):
        raise BadRequest(400, f"a job id is a number, like 42 (got {_quote(text)})")
    return int(text)


def _quote(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name, "").strip()
    if len(value) > MAX_TEXT:
        raise BadRequest(400, f"{name} is too long (at most {MAX_TEXT} characters)")
    return value or None


def _filters(request: Request, site: Site, *, state: str | None = None) -> queries.JobFilter:
    q = request.query_params
    for key in q:
        if len(q.getlist(key)) > 1:
            raise BadRequest(400, f"{key} is given more than once")
    chosen_state = state or _text(q, "state")
    if chosen_state and chosen_state not in queries.STATES:
        raise BadRequest(
            400, f"unknown state {_quote(chosen_state)}; one of: {', '.join(queries.STATES)}"
        )
    folder = _text(q, "folder")
    if folder and not re.fullmatch(r"[a-z0-9_-]+", folder):
        raise BadRequest(400, f"unknown folder {_quote(folder)}")
    times = {}
    for key in ("since", "until"):
        raw = _text(q, key)
        if raw:
            try:
                times[key] = parse_since(raw, now=site.clock.wall())
            except ValueError:
                raise BadRequest(
                    400, f"{key}: a duration like 30m, 2h, 3d or a date like 2025-01-31"
                ) from None
    before = _text(q, "before")
    return queries.JobFilter(
        state=chosen_state,
        folder=folder,
        name=_text(q, "name"),
        since=times.get("since"),
        until=times.get("until"),
        code=_code(q.get("code")) if state == "failed" else None,
        reason=_text(q, "reason"),
        before=job_id_of(before) if before else None,
    )


def _code(value: str | None) -> str | None:
    """The failed page's code filter: absent or empty for any code, NO_CODE for none."""
    if not value:
        return None
    if len(value) > MAX_TEXT:
        raise BadRequest(400, f"code is too long (at most {MAX_TEXT} characters)")
    return "" if value == NO_CODE else value


async def _form(request: Request, site: Site) -> FormData:
    """The POST's form, after the CSRF and same-origin checks."""
    if not site.guard.same_origin(request.headers):
        raise HTTPException(403, "refused: the request came from another site")
    try:
        form = await request.form(max_files=0, max_fields=1000)
    except HTTPException:
        raise  # 413: the body is larger than MAX_BODY
    except Exception:  # a malformed body
        raise BadRequest(400, "the form could not be read") from None
    if not site.guard.csrf_ok(form.get("csrf"), request.cookies.get(SESSION_COOKIE, "")):
        raise HTTPException(
            403, "refused: the form's CSRF token is missing or stale (reload the page)"
        )
    return form


def _next(form: FormData, default: str = "/") -> str:
    target = form.get("next")
    if (
        isinstance(target, str)
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and len(target) <= 2000
    ):
        return target
    return default


def _done(request: Request, site: Site, form: FormData, message: str, ok: bool = True) -> Response:
    """After a mutation: JSON for live.js, else back to the page with a flash message."""
    if _wants_json(request):
        return JSONResponse({"ok": ok, "message": message}, status_code=200 if ok else 409)
    response = RedirectResponse(_next(form), status_code=303)
    response.set_cookie(
        FLASH_COOKIE,
        site.guard.sign({"ok": ok, "message": message}),
        path="/",
        httponly=True,
        samesite="strict",
        max_age=60,
    )
    return response


# -- pages --------------------------------------------------------------------------------


def _overview(conn: Any, names: list[str], now: float) -> dict[str, Any]:
    known = queries.counts(conn)
    paused = queries.paused_folders(conn)
    shown = names + sorted(set(known) - set(names))
    folders = []
    for name in shown:
        per_state = known.get(name, {})
        folders.append(
            {
                "name": name,
                "configured": name in names,
                "counts": per_state,
                "total": sum(per_state.values()),
                "in_flight": queries.in_flight(conn, name),
                "last": queries.last_done(conn, name),
                "paused": paused.get(name),
            }
        )
    return {
        "folders": folders,
        "auth_pause": queries.meta(conn, "paused"),
        "failures": queries.recent_failures(conn, shown),
        "chart": views.chart(queries.finished_per_minute(conn, now)),
        "totals": {s: sum(c.get(s, 0) for c in known.values()) for s in queries.STATES},
    }


async def overview(request: Request) -> Response:
    site: Site = request.app.state.site
    data = await site.reader.run(_overview, site.folder_names, site.clock.wall())
    live = site.live
    learned = sorted(live.learned.items())
    return await page(
        request,
        site,
        "overview.html",
        data=data,
        states=queries.STATES,
        live=live,
        rps=site.metrics.requests_per_second(),
        qps=live.qps or site.cfg.api.qps,
        max_in_flight=site.cfg.api.max_in_flight,
        learned=learned,
        outputs_of=views.outputs_of,
    )


def _listing(
    conn: Any, f: queries.JobFilter, with_codes: bool
) -> tuple[list[dict[str, Any]], int | None, dict[str, dict[str, int]], list[tuple[str, int]]]:
    known = queries.counts(conn)
    rows, next_before = queries.job_list(conn, f, known=known)
    codes = queries.failure_codes(conn) if with_codes else []
    return rows, next_before, known, codes


async def _list_page(request: Request, template: str, **context: Any) -> Response:
    """The Jobs page, or the Failed page (the same list with state=failed and codes)."""
    site: Site = request.app.state.site
    failed_only = template == "failed.html"
    f = _filters(request, site, state="failed" if failed_only else None)
    with_codes = failed_only and request.headers.get("x-live") != "1"  # not on refreshes
    rows, next_before, known, codes = await site.reader.run(_listing, f, with_codes)
    return await page(
        request,
        site,
        template,
        rows=rows,
        next_before=next_before,
        filters=f,
        query=_query_of(request),
        folders=sorted(set(site.folder_names) | set(known)),
        states=queries.STATES,
        codes=codes,
        total=sum(
            n
            for folder, per_state in known.items()
            for state, n in per_state.items()
            if f.folder in (None, folder) and f.state in (None, state)
        ),
        **context,
    )


async def jobs(request: Request) -> Response:
    return await _list_page(request, "jobs.html")


async def failed(request: Request) -> Response:
    return await _list_page(request, "failed.html", meaning=views.error_meaning)


def _query_of(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items() if k != "before"}


def _job(conn: Any, job_id: int) -> tuple[dict[str, Any] | None, list[dict[str, Any]], int]:
    row = queries.job(conn, job_id)
    if row is None:
        return None, [], 0
    found, left_out = queries.events(conn, job_id)
    return row, found, left_out


def _facts(path: str | None, roots: list[str]) -> dict[str, Any] | None:
    """Size on disk and pixel size of a served file (its header only), or why not."""
    if not path:
        return None
    try:
        fd, st = open_served(path, roots)
    except NotServed as exc:
        return {"missing": str(exc)}
    with os.fdopen(fd, "rb") as fh:
        try:
            with Image.open(fh) as img:
                return {
                    "bytes": st.st_size,
                    "width": img.width,
                    "height": img.height,
                    "format": img.format,
                }
        except (OSError, ValueError, Image.DecompressionBombError):
            return {"bytes": st.st_size, "missing": "not an image Pillow can read"}


async def job_page(request: Request) -> Response:
    site: Site = request.app.state.site
    job_id = job_id_of(request.path_params["job_id"])
    row, found, left_out = await site.reader.run(_job, job_id)
    if row is None:
        raise HTTPException(404, f"there is no job {job_id} in the ledger")
    roots = allowed_roots(site.cfg.folders)
    outputs = views.outputs_of(row)
    original = await site.in_images(_facts, row["path"], roots)
    results = [await site.in_images(_facts, p, roots) for p in outputs]
    return await page(
        request,
        site,
        "job.html",
        job=row,
        sent=(sent := views.what_was_sent(row)),
        shape=views.canvas(
            sent.ratios,
            row["upload_width"] or row["width"],
            row["upload_height"] or row["height"],
        ),
        steps=views.timeline(found),
        left_out=left_out,
        outputs=list(zip(outputs, results, strict=True)),
        original=original,
        meaning=views.error_meaning(row["error_code"], row["error_http_status"]),
        results_refs=views.decode_json(row["results"]) or [],
    )


# -- images -------------------------------------------------------------------------------


def _path_for(job: dict[str, Any], role: str) -> str | None:
    if role == "original":
        return job["path"]
    if role == "mask":
        return job["mask_path"]
    outputs = views.outputs_of(job)
    index = int(role[len("result") :]) - 1
    return outputs[index] if index < len(outputs) else None


async def image(request: Request) -> Response:
    site: Site = request.app.state.site
    job_id = job_id_of(request.path_params["job_id"])
    role, size = request.path_params["role"], request.path_params["size"]
    if not ROLES.match(role):
        raise BadRequest(400, "the image is one of: original, mask, result1 … result9")
    if size not in SIZES and size != "full":
        raise BadRequest(400, f"the size is one of: {', '.join(SIZES)}, full")
    row = await site.reader.run(queries.job, job_id)
    if row is None:
        raise HTTPException(404, f"there is no job {job_id} in the ledger")
    path = _path_for(row, role)
    roots = allowed_roots(site.cfg.folders)
    try:
        if path is None:
            raise NotServed(f"job {job_id} has no {role} file")
        if size == "full":
            picture: Picture = await site.in_images(read_file, path, roots)
        else:
            picture = await site.in_images(site.thumbs.get, path, size, roots)
    except NotServed as exc:
        return Response(
            _placeholder(str(exc)),
            status_code=404,
            media_type="image/svg+xml",
            headers={"Cache-Control": "no-store"},
        )
    return Response(
        picture.data,
        media_type=picture.media_type,
        headers={"Cache-Control": "private, max-age=300"},
    )


def _placeholder(why: str) -> bytes:
    text = markupsafe.escape(why)
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="320" height="200" viewBox="0 0 320 200">'
        '<rect width="320" height="200" fill="#e9ecef"/>'
        '<text x="160" y="105" font-family="sans-serif" font-size="13" fill="#6c757d" '
        f'text-anchor="middle">{text}</text></svg>'
    ).encode()


# -- mutations ----------------------------------------------------------------------------


async def retry_one(request: Request) -> Response:
    site: Site = request.app.state.site
    form = await _form(request, site)
    job_id = job_id_of(request.path_params["job_id"])
    try:
        where = site.do_write(lambda ledger: requeue(site.cfg, ledger, job_id))
    except RequeueError as exc:
        status = 404 if str(exc) == f"no job {job_id}" else 409
        raise HTTPException(status, str(exc)) from None
    return _done(request, site, form, f"job {job_id}: back in the inbox as {Path(where).name}")


async def retry_many(request: Request) -> Response:
    site: Site = request.app.state.site
    form = await _form(request, site)
    raw = form.getlist("id")
    if not raw:
        raise BadRequest(400, "no jobs to retry were given")
    if len(raw) > MAX_RETRY_IDS:
        raise BadRequest(400, f"at most {MAX_RETRY_IDS} jobs at once")
    ids = [job_id_of(v if isinstance(v, str) else "") for v in raw]
    done, problems = 0, []
    for job_id in dict.fromkeys(ids):  # once each, in the order shown

        def one(ledger: Ledger, job_id: int = job_id) -> Any:
            return requeue(site.cfg, ledger, job_id)

        try:
            site.do_write(one)
            done += 1
        except RequeueError as exc:  # go on past one bad item, sum up at the end
            problems.append(str(exc))
    message = f"{done} job{'s' if done != 1 else ''} back in the inbox"
    if problems and not done:
        raise HTTPException(409, "no job was retried: " + "; ".join(problems[:5]))
    if problems:
        message += f"; {len(problems)} not: " + "; ".join(problems[:5])
        if len(problems) > 5:
            message += f"; and {len(problems) - 5} more"
    return _done(request, site, form, message, ok=not problems)


async def pause_folder(request: Request) -> Response:
    site: Site = request.app.state.site
    form = await _form(request, site)
    folder = request.path_params["folder"]
    reason = form.get("reason")
    try:
        site.do_write(
            lambda ledger: pause(
                site.cfg, ledger, folder, reason if isinstance(reason, str) else "", by="dashboard"
            )
        )
    except PauseError as exc:
        raise HTTPException(404 if "unknown folder" in str(exc) else 400, str(exc)) from None
    return _done(request, site, form, f"folder {folder} paused: its files wait in the inbox")


async def resume_folder(request: Request) -> Response:
    site: Site = request.app.state.site
    form = await _form(request, site)
    folder = request.path_params["folder"]
    try:
        was = site.do_write(lambda ledger: resume(site.cfg, ledger, folder))
    except PauseError as exc:
        raise HTTPException(404, str(exc)) from None
    return _done(
        request, site, form, f"folder {folder} resumed" if was else f"{folder} was not paused"
    )


# -- login --------------------------------------------------------------------------------


async def login(request: Request) -> Response:
    site: Site = request.app.state.site
    if not site.guard.needs_token:
        return RedirectResponse("/", status_code=303)
    if request.method == "GET":
        return await page(
            request, site, "login.html", next=request.query_params.get("next", "/"), wrong=False
        )
    form = await _form(request, site)
    offered = form.get("token")
    if not isinstance(offered, str) or not site.guard.token_matches(offered):
        return await page(request, site, "login.html", status=401, next=_next(form), wrong=True)
    response = RedirectResponse(_next(form), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        site.guard.session_value(),
        path="/",
        httponly=True,
        samesite="strict",
        max_age=30 * 86400,
    )
    return response


async def logout(request: Request) -> Response:
    site: Site = request.app.state.site
    await _form(request, site)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- machines -----------------------------------------------------------------------------


async def metrics(request: Request) -> Response:
    site: Site = request.app.state.site
    body = await site.reader.run(lambda conn: site.metrics.scrape())
    return Response(scrub(body.decode()).encode(), media_type=CONTENT_TYPE_LATEST)


async def healthz(request: Request) -> Response:
    site: Site = request.app.state.site
    healthy, age, why = site.live.health(site.clock.mono())
    body = {
        "status": "ok" if healthy else "unhealthy",
        "reason": why,
        "heartbeat_age_seconds": None if age is None else round(age, 3),
    }
    return JSONResponse(body, status_code=200 if healthy else 503)


# -- the app ------------------------------------------------------------------------------


class Gate:
    """Pure ASGI middleware: Host, size limits, the token; security headers on every answer."""

    HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (
            b"content-security-policy",
            b"default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self';"
            b" connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    )

    def __init__(self, app: ASGIApp, site: Site) -> None:
        self.app = app
        self.site = site

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in self.HEADERS if k not in present]
                if b"cache-control" not in present:
                    static = scope["path"].startswith("/static/")
                    headers.append((b"cache-control", b"max-age=300" if static else b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:  # answered 500 already (Starlette's error middleware)
            logs.get_logger().error(
                "dashboard request failed; the daemon is not affected",
                path=scope["path"],
                error=repr(exc),
            )
            if not started:  # the error page itself failed
                fallback = Response(
                    "internal error in the dashboard\n", status_code=500, media_type="text/plain"
                )
                await fallback(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope) -> Response | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        guard = self.site.guard
        if not guard.host_allowed(headers.get("host")):
            return Response(
                "unknown Host header: this dashboard answers only to its own address"
                " (add the name to http.allowed_hosts)\n",
                status_code=400,
                media_type="text/plain",
            )
        path: str = scope["path"]
        if len(scope.get("query_string", b"")) > MAX_QUERY or len(path) > MAX_PATH:
            return Response(
                f"the address is too long (at most {MAX_QUERY} bytes of query)\n",
                status_code=414,
                media_type="text/plain",
            )
        if any(path == p or (p.endswith("/") and path.startswith(p)) for p in PUBLIC):
            return None
        cookies = {}
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            cookies[name] = value
        if guard.authorized(headers, cookies):
            return None
        if scope["method"] == "GET" and "text/html" in headers.get("accept", ""):
            query = scope.get("query_string", b"").decode("latin-1")
            target = path + (f"?{query}" if query else "")
            return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)
        return Response(
            "a token is needed: log in at /login, or send Authorization: Bearer TOKEN\n",
            status_code=401,
            media_type="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="watchd"'},
        )


def build_app(site: Site) -> Starlette:
    routes = [
        Route("/", overview),
        Route("/jobs", jobs),
        Route("/failed", failed),
        Route("/job/{job_id}", job_page),
        Route("/img/{job_id}/{role}/{size}", image),
        Route("/job/{job_id}/retry", retry_one, methods=["POST"]),
        Route("/retry", retry_many, methods=["POST"]),
        Route("/folder/{folder}/pause", pause_folder, methods=["POST"]),
        Route("/folder/{folder}/resume", resume_folder, methods=["POST"]),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/metrics", metrics),
        Route("/healthz", healthz),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return await _error_response(request, site, exc.status_code, str(exc.detail))

    async def on_ledger(request: Request, exc: Exception) -> Response:
        return await _error_response(request, site, 503, str(exc))

    async def on_error(request: Request, exc: Exception) -> Response:
        # Starlette raises the error again after this answer; Gate logs it and stops it there.
        return await _error_response(
            request, site, 500, "internal error in the dashboard; the daemon log has the details"
        )

    app = Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: on_http,
            LedgerUnavailable: on_ledger,
            Exception: on_error,
        },
        max_body_size=MAX_BODY,
    )
    app.state.site = site
    gated: Callable[[Scope, Receive, Send], Awaitable[None]] = Gate(app, site)
    return gated  # type: ignore[return-value]
