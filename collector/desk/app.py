"""The desk's pages (Starlette, server-rendered Jinja2 templates, a little vanilla JavaScript).

Paths are fixed by the SPEC: /login, /logout, / (live), /stays, /stays/new, /stays/{id},
/stays/{id}/statement(.pdf|.csv), /sessions, /healthz. Every page but /healthz and the login
form needs a signed-in user; /users and /settings need the `owner` role. Every POST carries
the CSRF token of its web session.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from collector.billing.render import to_csv, to_html, to_pdf
from collector.billing.statement import Statement
from collector.config import SiteConfig
from collector.desk import auth
from collector.desk.badges import BadgePublisher
from collector.desk.i18n import Translator
from collector.desk.live import LiveState
from collector.desk.statements import period_sessions, socket_labels, stay_statement
from collector.desk.stays import Defaults, billing_end, form_values, local_input, validate
from collector.desk.storage import StayRow, Storage, StorageUnavailable, User
from collector.language import Lang
from collector.mqtt.client import MqttLink
from collector.store.influxql import InfluxQL, InfluxQLError

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
Role = Literal["reception", "owner"]

# French, the catalogue's keys (collector.desk.i18n): templates translate them with `_`.
POLICY_NAMES = {"at_cost": "Au coût", "flat": "Forfait", "allowance": "kWh inclus par nuit"}
ROLE_NAMES = {"reception": "réception", "owner": "propriétaire"}
STATUS_NAMES = {
    "charging": "En charge",
    "free": "Libre",
    "paused": "En pause (délestage)",
    "offline": "Hors ligne",
}


@dataclass
class Desk:
    site: SiteConfig
    storage: Storage
    link: MqttLink | None
    live: LiveState
    publisher: BadgePublisher | None
    influx: InfluxQL
    defaults: Defaults
    throttle: auth.LoginThrottle = field(default_factory=auth.LoginThrottle)

    @property
    def tz(self) -> ZoneInfo:
        return self.site.site.tz

    @property
    def t(self) -> Translator:
        return Translator(self.site.desk.language)


def _templates(desk: Desk) -> Environment:
    folder = resources.files("collector.desk").joinpath("templates")
    env = Environment(
        loader=FileSystemLoader(str(folder)),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def local(ts: datetime | None) -> str:
        return ts.astimezone(desk.tz).strftime("%d/%m/%Y %H:%M") if ts else ""

    t = desk.t

    def kwh(wh: float) -> str:
        return t.number(f"{wh / 1000:.3f}")

    def eur(value: float | Decimal) -> str:
        return t.number(f"{Decimal(repr(round(float(value), 6))).quantize(Decimal('0.01'))}")

    def duration(seconds: float) -> str:
        minutes = int(seconds // 60)
        return t("{h} h {m} min", h=minutes // 60, m=f"{minutes % 60:02d}")

    env.filters.update(local=local, kwh=kwh, eur=eur, num=t.number, duration=duration)
    env.globals.update(
        site=desk.site,
        policies=POLICY_NAMES,
        statuses=STATUS_NAMES,
        roles=ROLE_NAMES,
        min_password=auth.MIN_PASSWORD,
        lang=t.lang,
        _=t,
        decimal_mark=t.number("."),
        # What the live page's script writes itself as /live.json changes.
        live_statuses={key: t(name) for key, name in STATUS_NAMES.items()},
        live_texts={
            "online": t("Collecteur en ligne"),
            "offline": t("Collecteur hors ligne"),
            "unknown": t("Collecteur : pas encore de nouvelles"),
            "shed": t("délestage en cours ({kw} kW à réduire)"),
            "room": t("chambre {room}"),
            "badge": t("badge {badge}"),
        },
    )
    return env


def create_app(desk: Desk) -> Starlette:
    env = _templates(desk)
    t = desk.t
    # PDFs are made one at a time by one thread: WeasyPrint's memory (and glibc's arena for
    # that thread) is paid once, not once per web server thread.
    pdf_worker = ThreadPoolExecutor(1, thread_name_prefix="pdf")

    def render(
        request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        user: User | None = getattr(request.state, "user", None)
        csrf: str | None = getattr(request.state, "csrf", None)
        html = env.get_template(template).render(request=request, user=user, csrf=csrf, **context)
        return HTMLResponse(html, status_code=status_code)

    def error(request: Request, status_code: int, title: str, message: str) -> HTMLResponse:
        return render(request, "error.html", status_code, title=title, message=message)

    def signed_in(request: Request) -> tuple[User, str] | None:
        token = request.cookies.get(auth.SESSION_COOKIE)
        if not token:
            return None
        return desk.storage.web_session(auth.token_hash(token), datetime.now(UTC))

    def page(role: Role = "reception") -> Callable[[Handler], Handler]:
        """Signed in (else to /login), the role, and on POST a form with the session's CSRF."""

        def wrap(handler: Handler) -> Handler:
            async def endpoint(request: Request) -> Response:
                found = signed_in(request)
                if found is None:
                    if request.url.path.endswith(".json"):
                        return JSONResponse({"error": "login required"}, status_code=401)
                    target = quote(request.url.path, safe="/")
                    return RedirectResponse(f"/login?next={target}", status_code=303)
                request.state.user, request.state.csrf = found
                if role == "owner" and found[0].role != "owner":
                    return error(
                        request,
                        403,
                        t("Accès refusé"),
                        t("Cette page est réservée au propriétaire."),
                    )
                if request.method == "POST":
                    form = await request.form()
                    if not auth.same_token(_text(form, "csrf"), found[1]):
                        return error(
                            request,
                            403,
                            t("Formulaire refusé"),
                            t(
                                "Ce formulaire a expiré ou ne vient pas de cette page "
                                "(jeton CSRF absent ou faux) : rechargez la page et recommencez."
                            ),
                        )
                    request.state.form = form
                return await handler(request)

            return endpoint

        return wrap

    def cookie_options(request: Request) -> dict[str, Any]:
        return {
            "httponly": True,
            "samesite": "lax",
            "secure": request.url.scheme == "https",
            "path": "/",
        }

    # -- public ------------------------------------------------------------------------------

    async def healthz(request: Request) -> Response:
        try:
            desk.storage.users()
        except StorageUnavailable as exc:
            return JSONResponse({"status": "error", "database": str(exc)}, status_code=503)
        connected = desk.link.connected if desk.link is not None else False
        return JSONResponse({"status": "ok", "database": "ok", "mqtt": connected})

    async def login(request: Request) -> Response:
        next_path = request.query_params.get("next", "/")
        # Only a path of this site: `//host` and `/\host` would leave it.
        if not next_path.startswith("/") or next_path[1:2] in ("/", "\\"):
            next_path = "/"
        if request.method == "GET":
            token = auth.new_token()
            response = render(request, "login.html", login_csrf=token, next=next_path)
            response.set_cookie(auth.LOGIN_CSRF_COOKIE, token, **cookie_options(request))
            return response
        form = await request.form()
        name, password = _text(form, "name").strip(), _text(form, "password")
        if not auth.same_token(_text(form, "csrf"), request.cookies.get(auth.LOGIN_CSRF_COOKIE)):
            return error(
                request,
                403,
                t("Formulaire refusé"),
                t(
                    "Le formulaire de connexion a expiré (jeton CSRF absent ou faux) : "
                    "rechargez la page."
                ),
            )
        host = request.client.host if request.client else "?"
        keys = (f"name:{name.lower()}", f"ip:{host}")
        wait = desk.throttle.wait_s(*keys)
        if wait > 0:
            desk.throttle.failed(*keys)  # hammering only makes the wait longer
            wait = desk.throttle.wait_s(*keys)
            throttled = render(
                request,
                "login.html",
                429,
                login_csrf=_text(form, "csrf"),
                next=next_path,
                name=name,
                message=t("Trop d'essais manqués : réessayez dans {s} s.", s=f"{wait:.0f}"),
            )
            throttled.headers["Retry-After"] = str(int(wait) + 1)
            return throttled
        user = await run_in_threadpool(auth.authenticate, desk.storage, name, password)
        if user is None:
            desk.throttle.failed(*keys)
            log.warning("desk: failed login for %r from %s", name, host)
            return render(
                request,
                "login.html",
                401,
                login_csrf=_text(form, "csrf"),
                next=next_path,
                name=name,
                message=t("Nom ou mot de passe incorrect."),
            )
        desk.throttle.succeeded(*keys)
        token = auth.new_token()
        expires = datetime.now(UTC) + timedelta(hours=desk.site.desk.session_hours)
        desk.storage.add_web_session(auth.token_hash(token), user.id, auth.new_token(), expires)
        log.info("desk: %s signed in from %s", user.name, host)
        signed = RedirectResponse(next_path, status_code=303)
        signed.set_cookie(
            auth.SESSION_COOKIE,
            token,
            max_age=int(desk.site.desk.session_hours * 3600),
            **cookie_options(request),
        )
        signed.delete_cookie(auth.LOGIN_CSRF_COOKIE, path="/")
        return signed

    @page()
    async def logout(request: Request) -> Response:
        if request.method == "GET":
            return render(request, "logout.html")
        token = request.cookies.get(auth.SESSION_COOKIE, "")
        desk.storage.drop_web_session(auth.token_hash(token))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(auth.SESSION_COOKIE, path="/")
        return response

    # -- live ---------------------------------------------------------------------------------

    @page()
    async def live(request: Request) -> Response:
        return render(request, "live.html", live=desk.live.snapshot())

    @page()
    async def live_json(request: Request) -> Response:
        return JSONResponse(desk.live.snapshot())

    # -- stays --------------------------------------------------------------------------------

    def badges_changed() -> None:
        if desk.publisher is not None:
            desk.publisher.refresh()

    @page()
    async def stays(request: Request) -> Response:
        now = datetime.now(UTC)
        show_all = request.query_params.get("all") == "1"
        rows = desk.storage.stays()
        if not show_all:
            rows = [s for s in rows if s.closed is None or now - s.departure < timedelta(days=7)]
        return render(
            request, "stays.html", stays=rows, now=now, grace=desk.defaults.grace, show_all=show_all
        )

    def new_values() -> dict[str, str]:
        today = datetime.now(desk.tz).date()
        arrival = datetime.combine(today, time(15, 0), tzinfo=desk.tz)
        departure = datetime.combine(today + timedelta(days=1), time(11, 0), tzinfo=desk.tz)
        d = desk.defaults
        return {
            "room": "",
            "guest": "",
            "arrival": local_input(arrival, desk.tz),
            "departure": local_input(departure, desk.tz),
            "badges": "",
            "policy": d.policy,
            "fee_eur": f"{d.fee_eur.normalize():f}",
            "kwh_per_night": f"{d.kwh_per_night.normalize():f}",
        }

    @page()
    async def stay_new(request: Request) -> Response:
        if request.method == "GET":
            return render(request, "stay_form.html", values=new_values(), errors={}, stay=None)
        values = _values(request.state.form)
        fields, errors = validate(
            values, desk.storage, desk.tz, datetime.now(UTC), desk.defaults.grace, t=t
        )
        if fields is None:
            return render(request, "stay_form.html", 422, values=values, errors=errors, stay=None)
        stay_id = desk.storage.save_stay(request.state.user.name, fields)
        badges_changed()
        return RedirectResponse(f"/stays/{stay_id}", status_code=303)

    def not_found(request: Request) -> HTMLResponse:
        return error(request, 404, t("Séjour introuvable"), t("Aucun séjour de ce numéro."))

    def find_stay(request: Request) -> StayRow | None:
        try:
            return desk.storage.stay(int(request.path_params["stay_id"]))
        except ValueError:
            return None

    @page()
    async def stay_page(request: Request) -> Response:
        stay = find_stay(request)
        if stay is None:
            return not_found(request)
        errors: dict[str, str] = {}
        values = form_values(stay, desk.tz)
        status_code = 200
        if request.method == "POST":
            if stay.closed is not None:
                return error(
                    request, 409, t("Séjour clos"), t("Un séjour clos ne se modifie plus.")
                )
            values = {**values, **_values(request.state.form, partial=True)}
            fields, errors = validate(
                values, desk.storage, desk.tz, datetime.now(UTC), desk.defaults.grace, stay.id, t
            )
            if fields is not None:
                desk.storage.save_stay(request.state.user.name, fields, stay.id)
                badges_changed()
                return RedirectResponse(f"/stays/{stay.id}", status_code=303)
            status_code = 422
        try:
            statement, warnings = await run_in_threadpool(
                stay_statement, desk.site, stay, desk.influx, desk.defaults.grace, datetime.now(UTC)
            )
            influx_error = None
        except InfluxQLError as exc:
            statement, warnings, influx_error = None, [], str(exc)
        return render(
            request,
            "stay.html",
            status_code,
            stay=stay,
            values=values,
            errors=errors,
            statement=statement,
            warnings=warnings,
            influx_error=influx_error,
            audit=desk.storage.audit(stay.id),
            until=billing_end(stay, desk.defaults.grace),
            now=datetime.now(UTC),
        )

    @page()
    async def stay_close(request: Request) -> Response:
        stay = find_stay(request)
        if stay is None:
            return not_found(request)
        if stay.closed is None:
            desk.storage.close_stay(request.state.user.name, stay.id, datetime.now(UTC))
            badges_changed()
        return RedirectResponse(f"/stays/{stay.id}", status_code=303)

    def statement_lang(request: Request) -> Lang:
        lang = request.query_params.get("lang", desk.site.desk.language)
        return "en" if lang == "en" else "fr"

    async def statement_of(request: Request) -> Statement | Response:
        stay = find_stay(request)
        if stay is None:
            return not_found(request)
        statement, _ = await run_in_threadpool(
            stay_statement, desk.site, stay, desk.influx, desk.defaults.grace, datetime.now(UTC)
        )
        return statement

    @page()
    async def statement_html(request: Request) -> Response:
        found = await statement_of(request)
        if isinstance(found, Response):
            return found
        return HTMLResponse(to_html(found, statement_lang(request), desk.tz))

    @page()
    async def statement_pdf(request: Request) -> Response:
        found = await statement_of(request)
        if isinstance(found, Response):
            return found
        try:
            pdf = await asyncio.get_running_loop().run_in_executor(
                pdf_worker, _pdf, found, statement_lang(request), desk.tz
            )
        except OSError as exc:
            return error(
                request,
                500,
                t("PDF impossible"),
                t(
                    "Le PDF n'a pas pu être produit ({error}) : WeasyPrint a besoin de Pango "
                    "(Debian : libpango-1.0-0 libpangoft2-1.0-0).",
                    error=exc,
                ),
            )
        return Response(
            pdf,
            media_type="application/pdf",
            headers={"Content-Disposition": f'inline; filename="{found.number}.pdf"'},
        )

    @page()
    async def statement_csv(request: Request) -> Response:
        found = await statement_of(request)
        if isinstance(found, Response):
            return found
        text = to_csv(found, statement_lang(request), desk.tz)
        return Response(
            # With a byte order mark, Excel reads the file as UTF-8, as `irve bill --csv`.
            "\ufeff" + text,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{found.number}.csv"'},
        )

    # -- sessions -----------------------------------------------------------------------------

    def period(request: Request) -> tuple[date, date]:
        today = datetime.now(desk.tz).date()
        try:
            first = date.fromisoformat(request.query_params.get("from", ""))
        except ValueError:
            first = today - timedelta(days=7)
        try:
            last = date.fromisoformat(request.query_params.get("to", ""))
        except ValueError:
            last = today
        if last < first or last - first > timedelta(days=366):
            first, last = today - timedelta(days=7), today
        return first, last

    async def sessions_page(
        request: Request, message: str = "", status_code: int = 200
    ) -> Response:
        first, last = period(request)
        start = datetime.combine(first, time(0), tzinfo=desk.tz)
        end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=desk.tz)
        stays_now = desk.storage.stays()
        try:
            rows, warnings = await run_in_threadpool(
                period_sessions, desk.site, desk.influx, start, end, stays_now, desk.defaults.grace
            )
        except InfluxQLError as exc:
            return error(request, 502, t("InfluxDB injoignable"), str(exc))
        return render(
            request,
            "sessions.html",
            status_code,
            rows=rows,
            warnings=warnings,
            first=first,
            last=last,
            message=message,
        )

    @page()
    async def sessions(request: Request) -> Response:
        return await sessions_page(request)

    @page()
    async def assign(request: Request) -> Response:
        form = request.state.form
        session_id = _text(form, "session_id")
        try:
            stay = desk.storage.stay(int(_text(form, "stay_id")))
            start = datetime.fromisoformat(_text(form, "start"))
        except ValueError:
            stay, start = None, None
        if stay is None or start is None:
            return await sessions_page(request, t("Choisissez un séjour pour cette recharge."), 422)
        rows, _ = await run_in_threadpool(
            period_sessions,
            desk.site,
            desk.influx,
            start - timedelta(seconds=1),
            start + timedelta(seconds=1),
            [stay],
            desk.defaults.grace,
        )
        row = next((r for r in rows if r.session.session_id == session_id), None)
        if row is None or row.session.badge or not row.candidates:
            return await sessions_page(
                request,
                t(
                    "Cette recharge ne peut pas aller à ce séjour : elle a un badge, ou elle "
                    "n'a pas commencé pendant le séjour."
                ),
                422,
            )
        desk.storage.assign(request.state.user.name, session_id, row.session.start, stay.id)
        return RedirectResponse(f"/stays/{stay.id}", status_code=303)

    # -- owner --------------------------------------------------------------------------------

    @page("owner")
    async def users(request: Request) -> Response:
        message, status_code = "", 200
        if request.method == "POST":
            form = request.state.form
            name, role = _text(form, "name").strip(), _text(form, "role")
            password = _text(form, "password")
            if not name or len(name) > 64:
                message = t("Nom : 1 à 64 caractères.")
            elif role not in auth.ROLES:
                message = t("Rôle : reception ou owner.")
            elif auth.password_problem(password):
                message = t("Mot de passe : {n} caractères au moins.", n=auth.MIN_PASSWORD)
            else:
                hashed = await run_in_threadpool(auth.hash_password, password)
                desk.storage.put_user(name, role, hashed)
                return RedirectResponse("/users", status_code=303)
            status_code = 422
        return render(
            request, "users.html", status_code, users=desk.storage.users(), message=message
        )

    @page("owner")
    async def settings(request: Request) -> Response:
        shown = desk.site.model_dump(
            mode="json", exclude={"mqtt": {"password"}, "influx": {"token", "password"}}
        )
        shown.get("desk", {}).pop("owner_password", None)
        shown.get("notify", {}).pop("urls", None)
        return render(request, "settings.html", shown=shown, labels=socket_labels(desk.site))

    # -- errors -------------------------------------------------------------------------------

    async def storage_error(request: Request, exc: Exception) -> Response:
        full = isinstance(exc, StorageUnavailable) and exc.full
        log.error("desk: database unavailable on %s %s: %s", request.method, request.url.path, exc)
        return error(
            request,
            503,
            t("Base de données pleine") if full else t("Base de données occupée"),
            t(
                "Le disque de la base de données est plein (ou en panne) : rien n'a été enregistré. "
                "Réessayez dans un instant ; si cela dure, prévenez le propriétaire."
            )
            if full
            else t(
                "La base de données est verrouillée par un autre programme : rien n'a été "
                "enregistré. Réessayez dans un instant ; si cela dure, prévenez le propriétaire."
            ),
        )

    async def influx_error(request: Request, exc: Exception) -> Response:
        return error(request, 502, t("InfluxDB injoignable"), str(exc))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Loaded in the background now rather than by the first statement asked for (about
        # a second: WeasyPrint loads Pango and fonts).
        asyncio.get_running_loop().run_in_executor(pdf_worker, _load_weasyprint)
        task = None
        if desk.link is not None and desk.publisher is not None:
            desk.link.on_message = desk.live.on_message
            desk.link.start()
            desk.publisher.refresh(force=True)
            task = asyncio.create_task(desk.publisher.run())
        try:
            yield
        finally:
            pdf_worker.shutdown(wait=False, cancel_futures=True)
            if task is not None:
                task.cancel()
            if desk.link is not None:
                await desk.link.close(timeout=3.0)

    routes = [
        Route("/healthz", healthz),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["GET", "POST"]),
        Route("/", live),
        Route("/live.json", live_json),
        Route("/stays", stays),
        Route("/stays/new", stay_new, methods=["GET", "POST"]),
        Route("/stays/{stay_id}", stay_page, methods=["GET", "POST"]),
        Route("/stays/{stay_id}/close", stay_close, methods=["POST"]),
        Route("/stays/{stay_id}/statement", statement_html),
        Route("/stays/{stay_id}/statement.pdf", statement_pdf),
        Route("/stays/{stay_id}/statement.csv", statement_csv),
        Route("/sessions", sessions),
        Route("/sessions/assign", assign, methods=["POST"]),
        Route("/users", users, methods=["GET", "POST"]),
        Route("/settings", settings),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=_security_headers)],
        exception_handlers={
            StorageUnavailable: storage_error,
            InfluxQLError: influx_error,
        },
    )


def _pdf(statement: Statement, lang: Lang, tz: ZoneInfo) -> bytes:
    try:
        return to_pdf(statement, lang, tz)
    finally:
        # WeasyPrint's layout is a graph of boxes with cycles: freed now rather than when the
        # collector's thresholds say, so that each PDF does not add to the desk's memory.
        gc.collect()


def _load_weasyprint() -> None:
    try:
        importlib.import_module("weasyprint")
    except OSError as exc:  # no Pango: each PDF asked for will say so
        log.warning("desk: PDF statements unavailable: %s", exc)
    # What is loaded by now (modules, WeasyPrint's tables) lives as long as the process: kept
    # out of the cycle collector's scans, the collection after each PDF costs 3 ms of CPU
    # instead of 60.
    gc.collect()
    gc.freeze()


async def _security_headers(request: Request, call_next: RequestResponseEndpoint) -> Response:
    response = await call_next(request)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


FIELDS = ("room", "guest", "arrival", "departure", "badges", "policy", "fee_eur", "kwh_per_night")


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _values(form: FormData, partial: bool = False) -> dict[str, str]:
    """The stay fields of a form; `partial`: only those present (extending sends only the
    departure)."""
    return {name: _text(form, name) for name in FIELDS if not partial or name in form}
