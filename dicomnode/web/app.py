"""The Starlette application: the status page, its actions, the probes and ``/metrics``.

    GET  /                       status page (token or session cookie when ``http.token`` is set)
    GET  /login, POST /login     log in with the token (only when one is set); POST /logout
    POST /peers/{name}/echo      C-ECHO a configured peer; the result shows on the page
    POST /jobs/{id}/requeue      a dead or failed job gets a fresh set of attempts
    POST /deliveries/{id}/requeue, POST /deliveries/requeue-dead   dead deliveries are due again
    GET  /healthz, /readyz       JSON for an orchestrator (200 or 503); never need the token
    GET  /metrics                Prometheus text format (OpenMetrics when the scraper asks for it)

Actions answer 303 back to the page (their outcome is listed under "Recent actions"), or a plain-text 403
(forged or expired form), 404 (no such job, delivery or peer) or 409 (not in a state that can be requeued).
Templates are rendered by Jinja2 with autoescaping on, so values from the network (AE titles, error
comments, patient names when shown) are text, never markup.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dicomnode import software_version
from dicomnode.db import redact_url
from dicomnode.db.deliveries import retry_dead_deliveries
from dicomnode.db.jobs import retry_job
from dicomnode.dispatch.scu import echo
from dicomnode.web import health, queries
from dicomnode.web.control import NodeControl
from dicomnode.web.identity import NOT_FOR_CLINICAL_USE, model_card
from dicomnode.web.metrics import build_registry
from dicomnode.web.patient import PatientLookup
from dicomnode.web.security import SECURITY_HEADERS, SESSION_COOKIE, Security

HERE = Path(__file__).parent
PUBLIC_PATHS = ("/healthz", "/readyz", "/login")
RECENT_JOBS = 50
OPEN_DELIVERIES = 100
RECENT_SKIPPED = 20
LOGIN_FAILURE_DELAY_S = 1.0
MAX_FORM_BYTES = 16 * 1024  # the page's forms carry a CSRF token and at most a login token


class Guard:
    """ASGI middleware: the Host check, the token for everything but the probes and the login page, and
    the security headers on every response."""

    def __init__(self, app: ASGIApp, security: Security) -> None:
        self.app = app
        self.security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        refusal = self.refusal(Request(scope))
        await (refusal or self.app)(scope, receive, send_with_headers)

    def refusal(self, request: Request) -> Response | None:
        if not self.security.host_allowed(request):
            return PlainTextResponse("Host header not allowed: use 127.0.0.1 or localhost", 400)
        path = request.url.path
        if path in PUBLIC_PATHS or path.startswith("/static/") or self.security.authenticated(request):
            return None
        if request.method == "GET" and path != "/metrics":
            return RedirectResponse("/login", 303)
        return PlainTextResponse("token required", 401, headers={"www-authenticate": 'Bearer realm="kneealign"'})


@dataclass(frozen=True)
class EchoView:
    ok: bool
    text: str
    at: datetime


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value is not None else ""


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["when"] = _when
    return Jinja2Templates(env=env)


class StatusApp:
    """The routes and the little state they keep (recent actions, last C-ECHO per peer)."""

    def __init__(self, control: NodeControl, events_dir: Path | None) -> None:
        self.control = control
        self.config = control.config
        self.security = Security(self.config.http)
        self.card = model_card(self.config.model.weights)
        self.registry = build_registry(control, self.card, events_dir)
        self.templates = _templates()
        self.patients = PatientLookup() if self.config.http.show_patient_data else None
        self.actions: deque[tuple[datetime, str]] = deque(maxlen=20)
        self.echoes: dict[str, EchoView] = {}

    def asgi(self) -> Starlette:
        routes = [
            Route("/", self.page),
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/peers/{name}/echo", self.echo, methods=["POST"]),
            Route("/jobs/{job_id:int}/requeue", self.requeue_job, methods=["POST"]),
            Route("/deliveries/{delivery_id:int}/requeue", self.requeue_delivery, methods=["POST"]),
            Route("/deliveries/requeue-dead", self.requeue_dead_deliveries, methods=["POST"]),
            Route("/healthz", self.healthz),
            Route("/readyz", self.readyz),
            Route("/metrics", self.metrics),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        return Starlette(routes=routes, middleware=[Middleware(Guard, security=self.security)])

    # -- probes and metrics -----------------------------------------------------------------------------
    async def healthz(self, request: Request) -> Response:
        check = health.liveness(self.control)
        return JSONResponse({"alive": check.ok, "detail": check.detail}, 200 if check.ok else 503)

    async def readyz(self, request: Request) -> Response:
        readiness = await run_in_threadpool(health.readiness, self.control)
        return JSONResponse(readiness.as_json(), 200 if readiness.ready else 503)

    async def metrics(self, request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))  # OpenMetrics if asked for
        body = await run_in_threadpool(encoder, self.registry)
        return Response(body, headers={"content-type": content_type})

    # -- the page ---------------------------------------------------------------------------------------
    async def page(self, request: Request) -> Response:
        context = await run_in_threadpool(self._page_context)
        context["csrf"] = self.security.csrf_token(request)
        return self.templates.TemplateResponse(request, "status.html", context)

    def _page_context(self) -> dict[str, Any]:
        config, control = self.config, self.control
        readiness = health.readiness(control)
        database_ok = readiness.checks["database"].ok
        jobs = queries.recent_jobs(control.db, RECENT_JOBS) if database_ok else []
        now = _utcnow()
        return {
            "node": config.node, "host": control.host, "version": software_version(),
            "database": redact_url(config.database.url), "storage": config.storage, "processing": config.processing,
            "started_at": control.started_at, "uptime": str(now - control.started_at).split(".")[0], "now": now,
            "card": self.card, "not_for_clinical_use": NOT_FOR_CLINICAL_USE,
            "readiness": readiness, "processes": control.process_states(), "disk": health.disk(control),
            "peers": [(peer, self.echoes.get(peer.name)) for peer in config.peers],
            "counts": queries.state_counts(control.db) if database_ok else None,
            "jobs": jobs, "patients": self.patients.of(jobs) if self.patients is not None else {},
            "deliveries": queries.open_deliveries(control.db, OPEN_DELIVERIES) if database_ok else [],
            "skipped": queries.recent_skipped(control.db, RECENT_SKIPPED) if database_ok else [],
            "actions": list(reversed(self.actions)), "token_required": self.security.token_required,
            "show_patient_data": self.patients is not None,
        }

    # -- log in and out ---------------------------------------------------------------------------------
    async def login_page(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        if not self.security.token_required:
            return RedirectResponse("/", 303)
        return self.templates.TemplateResponse(request, "login.html", {
            "csrf": self.security.csrf_token(request), "error": error, "node": self.config.node}, status_code=status)

    async def login(self, request: Request) -> Response:
        form = await self._checked_form(request)
        if not self.security.token_required:
            return RedirectResponse("/", 303)
        if not self.security.token_matches(str(form.get("token", ""))):
            await asyncio.sleep(LOGIN_FAILURE_DELAY_S)  # slows guessing down
            return await self.login_page(request, "Wrong token.", 401)
        response = RedirectResponse("/", 303)
        response.set_cookie(SESSION_COOKIE, self.security.session_value(), httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")
        return response

    async def logout(self, request: Request) -> Response:
        await self._checked_form(request)
        response = RedirectResponse("/login", 303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # -- actions ----------------------------------------------------------------------------------------
    async def _checked_form(self, request: Request) -> dict[str, Any]:
        length = request.headers.get("content-length", "")
        if not length.isdigit() or int(length) > MAX_FORM_BYTES:
            raise HTTPException(413, "form missing or too large")
        form = await request.form(max_files=0, max_fields=8)
        csrf = form.get("csrf")
        if not self.security.post_allowed(request, csrf if isinstance(csrf, str) else None):
            raise HTTPException(403, "Forbidden: this form did not come from this page, or the page is out of "
                                     "date (the node restarted). Reload the page and try again.")
        return dict(form)

    def _done(self, text: str) -> Response:
        self.actions.append((_utcnow(), text))
        return RedirectResponse("/", 303)

    async def echo(self, request: Request) -> Response:
        await self._checked_form(request)
        name = request.path_params["name"]
        try:
            peer = self.config.peer_by_name(name)
        except KeyError:
            raise HTTPException(404, "no such peer") from None
        result = await run_in_threadpool(echo, peer, self.config)
        text = f"success in {result.elapsed_s * 1000:.0f} ms" if result.ok else f"FAILED: {result.reason}"
        self.echoes[peer.name] = EchoView(result.ok, text, _utcnow())
        return self._done(f"C-ECHO {peer.name}: {text}")

    async def requeue_job(self, request: Request) -> Response:
        await self._checked_form(request)
        job_id = request.path_params["job_id"]
        try:
            job = await run_in_threadpool(retry_job, self.control.db, job_id)
        except LookupError:
            raise HTTPException(404, f"no job {job_id}") from None
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        self.control.wake_workers()
        return self._done(f"job {job.id} queued again ({job.max_attempts} attempts)")

    async def requeue_delivery(self, request: Request) -> Response:
        await self._checked_form(request)
        delivery_id = request.path_params["delivery_id"]
        count = await run_in_threadpool(retry_dead_deliveries, self.control.db, delivery_id=delivery_id)
        if not count:
            raise HTTPException(409, f"delivery {delivery_id} is not dead (or does not exist)")
        self.control.dispatch_soon()
        return self._done(f"delivery {delivery_id} queued again")

    async def requeue_dead_deliveries(self, request: Request) -> Response:
        await self._checked_form(request)
        count = await run_in_threadpool(retry_dead_deliveries, self.control.db)
        if count:
            self.control.dispatch_soon()
        return self._done(f"{count} dead delivery(ies) queued again")


def create_app(control: NodeControl, events_dir: Path | None = None) -> Starlette:
    return StatusApp(control, events_dir).asgi()
