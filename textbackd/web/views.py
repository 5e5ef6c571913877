"""The front desk's handlers: thin. Each reads its query through ``store/pages.py``, turns rows into
words through ``present.py``, and renders a template; each POST acts through ``staff/`` and answers
with a redirect (so a reload never sends a text twice)."""

from __future__ import annotations

import csv
import io
import re
import secrets
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from textbackd import __version__
from textbackd.core import numbers
from textbackd.core.errors import TextbackError
from textbackd.core.figures import Figures, duration
from textbackd.core.model import CallFilter, Role
from textbackd.staff import accounts, actions
from textbackd.store import conversations as conv_q
from textbackd.store import figures as figures_q
from textbackd.store import pages
from textbackd.web import charts
from textbackd.web.guard import (
    CSP,
    CTX,
    LOGIN_COOKIE,
    Ctx,
    client_address,
    cookie_name,
    forbidden,
    needs,
    render,
    secure_request,
    session_of,
)
from textbackd.web.present import Present, compose

MESSAGES = {  # ?m= after a redirect: fixed words, never customer data in a URL
    "queued": "Text queued: it goes out within seconds.",
    "held": "Text held for quiet hours: it goes out when they end.",
    "claimed": "The conversation is yours.",
    "released": "Nobody has the conversation now.",
    "handled": "Marked handled: it reopens on the next reply or missed call.",
    "blocked": "Number blocked: textbackd will not text it again.",
    "unblocked": "Number unblocked.",
    "user_added": "User added.",
    "user_changed": "User changed.",
}


def ctx_of(request: web.Request) -> Ctx:
    return request.app[CTX]


def present(request: web.Request) -> Present:
    c = ctx_of(request)
    return Present(c.config, c.clock())


def actor(request: web.Request) -> str:
    return f"web:{session_of(request).user.name}"


# -- signing in -------------------------------------------------------------------------


def _safe_next(nxt: str) -> str:
    return nxt if nxt.startswith("/") and not nxt.startswith("//") and "\\" not in nxt else "/"


async def login_page(request: web.Request, *, error: str = "", status: int = 200, name: str = "") -> web.Response:
    c = ctx_of(request)
    # one token per browser while its form is open: a second fetch (the favicon's redirect, another tab)
    # must not make the first form's token stale
    kept = request.cookies.get(LOGIN_COOKIE, "")
    token = kept if re.fullmatch(r"[A-Za-z0-9_-]{32}", kept) else secrets.token_urlsafe(24)
    nonce = secrets.token_urlsafe(16)
    resp = render(request, "login.html", status=status, error=error, login_token=token, name=name, nonce=nonce,
                  next=_safe_next(request.query.get("next", "/")))
    resp.headers["Content-Security-Policy"] = CSP.replace("style-src 'self'", f"style-src 'nonce-{nonce}'")
    resp.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="Strict", secure=secure_request(request, c),
                    path="/login", max_age=3600)
    return resp


async def login_get(request: web.Request) -> web.Response:
    return await login_page(request)


async def login_post(request: web.Request) -> web.StreamResponse:
    c = ctx_of(request)
    form = await request.post()
    sent, expected = str(form.get("login_token", "")), request.cookies.get(LOGIN_COOKIE, "")
    if not sent or not expected or not secrets.compare_digest(sent, expected):
        return forbidden(request, "The sign-in form is out of date or came from another site. Reload it and try again.")
    name = str(form.get("username", ""))
    try:
        signed = await accounts.login(c.store, c.web, name, str(form.get("password", "")),
                                address=client_address(request), now=c.clock())
    except accounts.LoginRefused as e:
        return await login_page(request, error=str(e), status=e.status, name=name[:40])
    resp = web.HTTPSeeOther(_safe_next(str(form.get("next", "/"))))
    resp.set_cookie(cookie_name(c.tls), signed.cookie, httponly=True, samesite="Strict",
                    secure=secure_request(request, c), path="/")
    resp.del_cookie(LOGIN_COOKIE, path="/login")
    raise resp


async def logout(request: web.Request) -> web.StreamResponse:
    c = ctx_of(request)
    accounts.logout(c.store, session_of(request), now=c.clock())
    resp = web.HTTPSeeOther("/login")
    resp.del_cookie(cookie_name(c.tls), path="/")
    raise resp


# -- inbox and missed calls -------------------------------------------------------------


@needs(Role.FRONTDESK)
async def inbox(request: web.Request) -> web.Response:
    c, p = ctx_of(request), present(request)
    after = _inbox_cursor(request.query.get("after", ""))
    limit = c.web.page_size
    rows = pages.inbox_page(c.store, before=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = ""
    if more:
        last = rows[-1]
        nxt = "?" + urlencode({"after": f"{int(last.claimed_by is not None)}_{last.waiting_since!r}_{last.number}"})
    return render(request, "inbox.html", rows=[p.inbox_row(r) for r in rows], next=nxt, live=after is None,
                  total=pages.inbox_count(c.store), message=MESSAGES.get(request.query.get("m", ""), ""))


def _inbox_cursor(s: str) -> tuple[int, float, str] | None:
    m = re.fullmatch(r"([01])_([0-9.e+-]+)_(\+?[0-9A-Za-z<>_.-]{1,40})", s)
    if not m:
        return None
    try:
        return int(m.group(1)), float(m.group(2)), m.group(3)
    except ValueError:
        return None


def _local_midnight(c: Ctx, d: date) -> float:
    return datetime.combine(d, datetime.min.time()).replace(tzinfo=c.config.business.tz).timestamp()


def _date(s: str) -> date | None:
    try:
        return date.fromisoformat(s) if s else None
    except ValueError:
        return None


@needs(Role.FRONTDESK)
async def calls(request: web.Request) -> web.Response:
    c, p, q = ctx_of(request), present(request), request.query
    problems = []
    number = None
    typed = q.get("number", "").strip()[:40]
    if typed:
        e164 = numbers.normalize(typed, c.config.business.default_region)
        digits = re.sub(r"\D", "", typed)
        if e164.startswith("+"):
            number = e164
        elif len(digits) >= 3:
            number = digits
        else:
            problems.append(f"{typed!r} is not a number to search for: type at least 3 digits.")
    since_d, until_d = _date(q.get("from", "")), _date(q.get("to", ""))
    for k in ("from", "to"):
        if q.get(k) and _date(q[k]) is None:
            problems.append(f"{q[k]!r} is not a date like 2026-11-23.")
    f = CallFilter(
        line=q.get("line") or None,
        since=_local_midnight(c, since_d) if since_d else None,
        until=_local_midnight(c, until_d + timedelta(days=1)) if until_d else None,
        attention=q.get("status") if q.get("status") in ("needs", "handled") else None,
        number=number,
        all_calls=q.get("all") == "1",
    )
    before = None
    m = re.fullmatch(r"([0-9.e+-]+)_(.{1,200})", q.get("before", ""))
    if m:
        try:
            before = (float(m.group(1)), m.group(2))
        except ValueError:
            before = None
    limit = c.web.page_size
    rows = pages.calls_page(c.store, f, before=before, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    keep = {k: v for k, v in q.items() if k != "before" and v}
    nxt = "?" + urlencode({**keep, "before": f"{rows[-1].call.ended!r}_{rows[-1].call.id}"}) if more else ""
    lines = sorted(set(pages.recent_lines(c.store, c.clock() - 90 * 86400)) | {ln.did for ln in c.config.lines})
    return render(request, "calls.html", rows=[p.call_row(r) for r in rows], next=nxt, live=before is None,
                  problems=problems, lines=[{"did": d, "label": p.line(d), "selected": d == f.line} for d in lines],
                  q={"number": typed, "from": q.get("from", ""), "to": q.get("to", ""), "status": f.attention or "",
                     "all": f.all_calls},
                  first="?" + urlencode(keep) if before is not None else "")


# -- a conversation ---------------------------------------------------------------------


def _number(request: web.Request) -> str:
    c = ctx_of(request)
    raw = request.match_info["number"]
    n = numbers.normalize(raw, c.config.business.default_region)
    if not n.lstrip("+").isdigit():
        raise web.HTTPNotFound(text="not a phone number\n")
    return n


@needs(Role.FRONTDESK)
async def conversation(request: web.Request, *, error: str = "", status: int = 200, draft: str = "",
                       quiet_until: float | None = None) -> web.Response:
    c, p = ctx_of(request), present(request)
    n = _number(request)
    if request.method == "GET" and n != request.match_info["number"]:
        raise web.HTTPMovedPermanently(p.link(n))
    state = conv_q.state(c.store, n)
    opted, source = pages.opted_out(c.store, n)
    items = [p.thread_item(it) for it in pages.thread(c.store, n)]
    info = compose(draft)
    return render(
        request, "conversation.html", status=status, error=error, draft=draft, items=items,
        number=p.number(n), e164=n, href=p.link(n), name=p.person(pages.caller_name(c.store, n)),
        claimed=p.actor(state.claimed_by), mine=state.claimed_by == actor(request),
        handled=p.time(state.handled_at) if state.handled_at else "", handled_by=p.actor(state.handled_by),
        needs_person=actions.needs_person(c.store, n), unread=state.unread,
        opted_out=opted, opt_source=p.actor(source.removeprefix("staff:")) if source.startswith("staff:") else source,
        compose=info, quiet_until=p.time(quiet_until) if quiet_until else "",
        message=MESSAGES.get(request.query.get("m", ""), ""),
    )


def _back(request: web.Request, n: str, m: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(Present.link(n) + f"?m={m}")


@needs(Role.FRONTDESK)
async def conversation_send(request: web.Request) -> web.StreamResponse:
    c = ctx_of(request)
    n = _number(request)
    form = await request.post()
    text, choice = str(form.get("text", "")), str(form.get("quiet", ""))
    now = c.clock()
    hold = actions.quiet_hours_end(c.config, now)
    if hold is not None and choice not in ("hold", "send"):
        return await conversation(request, draft=text, quiet_until=hold, status=200)
    try:
        actions.send_text(c.store, c.config, n, text, now=now, source="web", actor=actor(request),
                          hold_until=hold if choice == "hold" else None)
    except TextbackError as e:
        return await conversation(request, error=str(e), status=409, draft=text)
    c.host.wake_outbox()
    c.hub.publish("conversation", n)
    raise _back(request, n, "held" if hold is not None and choice == "hold" else "queued")


@needs(Role.FRONTDESK)
async def conversation_action(request: web.Request) -> web.StreamResponse:
    c = ctx_of(request)
    n = _number(request)
    what = request.match_info["action"]
    now, who = c.clock(), actor(request)
    try:
        if what == "claim":
            actions.claim(c.store, n, actor=who, now=now)
            m = "claimed"
        elif what == "release":
            actions.release(c.store, n, actor=who, now=now)
            m = "released"
        elif what == "handled":
            actions.mark_handled(c.store, n, actor=who, now=now)
            m = "handled"
        elif what == "block":
            form = await request.post()
            actions.block(c.store, c.config, n, actor=who, reason=str(form.get("reason", "")), now=now)
            m = "blocked"
        elif what == "unblock":
            actions.unblock(c.store, c.config, n, actor=who, now=now)
            m = "unblocked"
        else:
            raise web.HTTPNotFound()
    except TextbackError as e:
        return await conversation(request, error=str(e), status=400)
    c.hub.publish("conversation", n)
    raise _back(request, n, m)


@needs(Role.FRONTDESK)
async def describe(request: web.Request) -> web.Response:
    """The reply box's counter (htmx posts the draft as the person types)."""
    form = await request.post()
    return render(request, "_compose.html", compose=compose(str(form.get("text", ""))))


# -- figures ----------------------------------------------------------------------------

PERIODS = {"7": 7, "30": 30, "90": 90}


def _period(request: web.Request) -> tuple[float, float, int]:
    c = ctx_of(request)
    days = PERIODS.get(request.query.get("days", "30"), 30)
    today = datetime.fromtimestamp(c.clock(), tz=c.config.business.tz).date()
    since = _local_midnight(c, today - timedelta(days=days - 1))
    return since, c.clock(), days


def _fig_row(label: str, f: Figures) -> dict[str, str]:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.0f}%"

    return {"label": label, "missed": str(f.missed), "texts": str(f.texts), "reply": pct(f.reply_rate),
            "recovery": pct(f.recovery_rate), "p50": duration(f.median_to_text), "p95": duration(f.p95_to_text),
            "opt_outs": str(f.opt_outs)}


FIG_HEADERS = ("period", "missed calls", "texts sent", "reply rate", "recovery rate", "time to text p50",
               "time to text p95", "opt-outs")


FIGURES_TTL = 60.0  # seconds a computed period is shown before it is computed again


def _report(c: Ctx, days: int, since: float, line: str | None) -> tuple[Any, float]:
    """The figures of the period, computed at most once a minute per (period, line): ``compute`` reads every
    missed call of the period, so a 30-day page on a busy store costs a few hundred ms the first time."""
    key = (days, line, since)
    hit = c.cache.get(key)
    now = c.clock()
    if hit is None or now - hit[1] > FIGURES_TTL:
        hit = (figures_q.compute(c.store, c.config, since=since, until=now, line=line), now)
        for k in [k for k, v in c.cache.items() if now - v[1] > FIGURES_TTL]:
            del c.cache[k]
        c.cache[key] = hit
    return hit


@needs(Role.OWNER)
async def figures(request: web.Request) -> web.Response:
    c = ctx_of(request)
    since, until, days = _period(request)
    line = request.query.get("line") or None
    rep, computed_at = _report(c, days, since, line)
    p = present(request)
    days_l = list(rep.by_day)
    return render(
        request, "figures.html", days=days, periods=list(PERIODS), line=line or "",
        total=_fig_row("all", rep.total),
        by_day=[_fig_row(d, f) for d, f in rep.by_day.items()],
        by_week=[_fig_row(w, f) for w, f in rep.by_week.items()],
        by_line=[_fig_row(p.line(d), f) for d, f in rep.by_line.items()],
        headers=FIG_HEADERS,
        chart_counts=charts.bars("Missed calls and texts sent per day", [d[5:] for d in days_l],
                                 [("missed calls", [f.missed for f in rep.by_day.values()], "s1"),
                                  ("texts sent", [f.texts for f in rep.by_day.values()], "s2")]),
        chart_rates=charts.lines("Reply and recovery rate per day", [d[5:] for d in days_l],
                                 [("reply rate", [f.reply_rate for f in rep.by_day.values()], "s3"),
                                  ("recovery rate", [f.recovery_rate for f in rep.by_day.values()], "s4")]),
        csv_href="/figures.csv?" + urlencode({"days": days, **({"line": line} if line else {})}),
        computed=p.time(computed_at),
    )


@needs(Role.OWNER)
async def figures_csv(request: web.Request) -> web.Response:
    c = ctx_of(request)
    since, until, days = _period(request)
    line = request.query.get("line") or None
    rep = figures_q.compute(c.store, c.config, since=since, until=until, line=line)
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(("group", *FIG_HEADERS))
    for group, rows in (("total", {"all": rep.total}), ("day", rep.by_day), ("week", rep.by_week),
                        ("line", rep.by_line)):
        for label, f in rows.items():
            r = _fig_row(label, f)
            w.writerow((group, label, r["missed"], r["texts"], r["reply"], r["recovery"],
                        "" if f.median_to_text is None else round(f.median_to_text, 1),
                        "" if f.p95_to_text is None else round(f.p95_to_text, 1), r["opt_outs"]))
    actions.record_export(c.store, actor=actor(request), now=c.clock(),
                          what=f"figures CSV, last {days} days" + (f", line {line}" if line else ""))
    return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="textbackd-figures-{days}d.csv"'})


# -- status and users -------------------------------------------------------------------


def _status_words(p: Present, value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


@needs(Role.ADMIN)
async def status(request: web.Request) -> web.Response:
    c, p = ctx_of(request), present(request)
    now = c.clock()
    h = c.host.health()
    pbx = c.host.pbx_facts()
    facts = pages.store_facts(c.store, now)
    senders = []
    for s in c.host.sender_facts():
        st = s.get("status", {})
        rows = []
        if s["kind"] == "modem":
            rows = [("state", st.get("state")), ("operator", st.get("operator")),
                    ("registration", st.get("registration")),
                    ("signal", f"{st['signal_dbm']} dBm" if st.get("signal_dbm") is not None else None),
                    ("last error", st.get("reason"))]
        else:
            rows = [("last success", p.time(st.get("last_success_at")) or None),
                    ("last error", (f"{st.get('last_error')} ({p.time(st.get('last_error_at'))})"
                                    if st.get("last_error") else None))]
        senders.append({"name": s["name"], "kind": s["kind"], "healthy": "working" if s["healthy"] else "NOT working",
                        "ok": s["healthy"], "rows": [(k, _status_words(p, v)) for k, v in rows]})
    checks = [(k.replace("_", " "), v) for k, v in (h.get("checks") or {}).items()]
    return render(
        request, "status.html", ok=h.get("ok"), checks=checks, senders=senders,
        pbx={"kind": pbx.get("kind", "-"), "address": pbx.get("address", "-"),
             "state": ("connected" if pbx.get("connected") else "NOT connected") if pbx else "not known",
             "ok": bool(pbx.get("connected")),
             "up_since": p.time(pbx.get("up_since")) or "-", "last_event": p.time(pbx.get("last_event_at")) or "none yet",
             "reconnects": pbx.get("reconnects_today", "-")},
        outbox={"depth": facts.outbox_depth,
                "oldest": (f"due since {p.time(facts.oldest_due_at)} ({duration(now - facts.oldest_due_at)} ago)"
                           if facts.oldest_due_at else "nothing overdue")},
        email={"queued": facts.emails_queued, "oldest": p.time(facts.oldest_email_at) or "-",
               "failed": facts.emails_failed, "on": c.config.email.enabled},
        store={"path": c.config.store.path, "size": f"{facts.size_bytes / 1e6:.1f} MB", "schema": facts.schema_version,
               "calls": facts.calls, "retention": f"{c.config.store.retention_days} days" if c.config.store.retention_days
               else "kept forever"},
        version=__version__, listeners=c.hub.listeners,
    )


@needs(Role.ADMIN)
async def users(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    c, p = ctx_of(request), present(request)
    now = c.clock()
    rows = [{"name": u.name, "role": str(u.role), "state": "disabled" if u.disabled else (
        f"locked until {p.time(u.locked_until)}" if u.locked_until and u.locked_until > now else "active"),
        "disabled": u.disabled, "locked": bool(u.locked_until and u.locked_until > now),
        "last": p.time(u.last_login_at) or "never", "href": "/users/" + quote(u.name, safe="")}
        for u in accounts.list_users(c.store)]
    return render(request, "users.html", rows=rows, error=error, status=status, roles=[str(r) for r in Role],
                  message=MESSAGES.get(request.query.get("m", ""), ""))


@needs(Role.ADMIN)
async def users_add(request: web.Request) -> web.StreamResponse:
    c = ctx_of(request)
    form = await request.post()
    try:
        await accounts.add_user_off_loop(c.store, str(form.get("name", "")), str(form.get("role", "")),
                                         str(form.get("password", "")), actor=actor(request), now=c.clock())
    except TextbackError as e:
        return await users(request, error=str(e), status=400)
    raise web.HTTPSeeOther("/users?m=user_added")


@needs(Role.ADMIN)
async def users_action(request: web.Request) -> web.StreamResponse:
    c = ctx_of(request)
    name, what = request.match_info["name"], request.match_info["action"]
    now, who = c.clock(), actor(request)
    try:
        if what == "disable":
            if name.lower() == session_of(request).user.name.lower():
                raise TextbackError("you cannot disable your own account")
            accounts.set_disabled(c.store, name, True, actor=who, now=now)
        elif what == "enable":
            accounts.set_disabled(c.store, name, False, actor=who, now=now)
        elif what == "unlock":
            accounts.unlock(c.store, name, actor=who, now=now)
        else:
            raise web.HTTPNotFound()
    except TextbackError as e:
        return await users(request, error=str(e), status=400)
    raise web.HTTPSeeOther("/users?m=user_changed")


# -- live updates and health ------------------------------------------------------------


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``change`` with ``{"kind", "number"}``; the page then fetches its rows."""
    c = ctx_of(request)
    s = session_of(request)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    await resp.write(b"retry: 2000\n: hello\n\n")
    try:
        async for item in c.hub.stream():
            if item is None:  # quiet: prove the session still lives, keep proxies from closing
                if accounts.session_for(c.store, c.web, request.cookies.get(cookie_name(c.tls)), now=c.clock()) is None:
                    break
                await resp.write(b": keep-alive\n\n")
                continue
            await resp.write(f"event: change\ndata: {item}\n\n".encode())
    except (ConnectionResetError, RuntimeError):
        pass
    del s
    return resp


async def healthz(request: web.Request) -> web.Response:
    c = ctx_of(request)
    h = c.host.health() or {"ok": True}
    return web.json_response(h, status=200 if h.get("ok") else 503)


def add_routes(app: web.Application) -> None:
    import pathlib

    r = app.router
    r.add_get("/healthz", healthz)
    r.add_get("/login", login_get)
    r.add_post("/login", login_post)
    r.add_post("/logout", logout)
    r.add_get("/", inbox)
    r.add_get("/calls", calls)
    r.add_get("/conversations/{number}", conversation)
    r.add_post("/conversations/{number}/send", conversation_send)
    r.add_post("/conversations/{number}/{action:claim|release|handled|block|unblock}", conversation_action)
    r.add_post("/compose/describe", describe)
    r.add_get("/figures", figures)
    r.add_get("/figures.csv", figures_csv)
    r.add_get("/status", status)
    r.add_get("/users", users)
    r.add_post("/users", users_add)
    r.add_post("/users/{name}/{action:disable|enable|unlock}", users_action)
    r.add_get("/events", events)
    r.add_static("/static/", pathlib.Path(__file__).parent / "static", append_version=False)
