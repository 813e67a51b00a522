"""Triage API and web desk, served by the store process.

Every endpoint but the health checks and the login page needs a principal: a bearer token
(CLI, scripts) or a browser session (the web desk), with a role at least the endpoint's:
viewer reads, reviewer claims and resolves, admin reads raw material (dead letters, labelled
text, reference samples). Anonymous calls get 401, too-low roles 403.
"""

# No `from __future__ import annotations`: FastAPI must see the local dependency aliases
# (Viewer, Reviewer, Admin, Filter) as objects when it reads the endpoint signatures.

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from detectors.text import screening_text
from pipeline.drift.report import build as drift_report_of
from pipeline.drift.report import detail as drift_detail
from pipeline.drift.store import DriftStore
from pipeline.observability.http import metrics_body
from pipeline.settings import DriftSettings
from pipeline.store.auth import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE, SESSION_TTL_S, Authenticator, Principal, Role
from pipeline.store.clickhouse import Store
from pipeline.store.desk import Desk, DeskError, Origin, QueueFilter, Sort, Status
from schemas.drill import DrillCaseResult
from schemas.events import LLMEvent
from schemas.evidence import ReviewLabel, Severity

log = logging.getLogger(__name__)
_bearer = HTTPBearer(auto_error=False)
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
#: No inline script or style anywhere: injected markup could not run even if it reached the DOM.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class Resolution(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: ReviewLabel
    note: Annotated[str, Field(max_length=4000)] = ""


class FieldError(BaseModel):
    """One reason a request failed validation: where (`loc`) and what."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """The one error body of the API, whatever the status: what went wrong (never internals or
    data), and for a request that failed validation, each field at fault."""

    detail: str
    errors: list[FieldError] = Field(default_factory=list)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of an operation that answers `statuses` besides its success."""
    why = {
        400: "the body is not JSON",
        401: "missing or wrong credentials",
        403: "the principal's role is too low, a browser change lacked its CSRF token, or the policy forbids it",
        404: "no such bundle, run, grant or action",
        409: "the change conflicts with the resource's state (claimed by another, not waiting, wrong run)",
        422: "the request failed validation",
        503: "a service the change needs (the broker) is unavailable: nothing was changed",
    }
    return {status: {"model": ErrorBody, "description": why[status]} for status in statuses}


#: Every status each kind of operation answers besides 200 (the document lists them all).
READ = error_responses(401, 403)
READ_Q = error_responses(401, 403, 422)
ONE = error_responses(401, 403, 404, 422)
CHANGE = error_responses(401, 403, 404, 409, 422)
CHANGE_BODY = error_responses(400, 401, 403, 404, 409, 422)
GROUP_CHANGE = error_responses(400, 401, 403, 409, 422)


def _web(name: str) -> str:
    return resources.files("pipeline.web").joinpath(name).read_text()


def create_api(
    store: Store,
    authenticator: Authenticator,
    *,
    background: Callable[[], Coroutine[Any, Any, Any]] | None = None,
    is_ready: Callable[[], bool] = lambda: True,
    secure_cookies: bool = False,
    guard: Any = None,
    perf: Any = None,
    drift_settings: DriftSettings | None = None,
) -> FastAPI:
    """`background` is started with the app and cancelled with it (the sink, in the store process);
    `guard` (a pipeline.guard.desk_api.GuardDesk) adds grants and session actions; `perf` (a
    pipeline.perf.service.PerfService) the performance routes and page."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(background()) if background else None
        try:
            yield
        finally:
            if task:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    # The document is served behind auth below; Swagger's page would need a CDN script, which
    # neither this machine's network nor the CSP allows.
    app = FastAPI(
        title="oodwatch triage API", version="0.2.0", lifespan=lifespan, openapi_url=None, docs_url=None,
        redoc_url=None,
    )  # fmt: skip
    desk = Desk(store)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        # same-origin, not no-referrer: with no-referrer Chromium sends `Origin: null` on form posts.
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    def principal_of(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal | None:
        if credentials is not None:
            return authenticator.by_token(credentials.credentials)
        session = request.cookies.get(SESSION_COOKIE)
        if not session:
            return None
        try:
            return authenticator.by_session(
                session, request.headers.get(CSRF_HEADER), changes_state=request.method not in SAFE_METHODS
            )
        except PermissionError as exc:
            raise HTTPException(status_code=403, detail=str(exc)) from None

    def require(role: Role) -> Callable[..., Principal]:
        def dependency(
            request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
        ) -> Principal:
            principal = principal_of(request, credentials)
            if principal is None:
                raise HTTPException(
                    status_code=401, detail="missing or wrong credentials", headers={"WWW-Authenticate": "Bearer"}
                )
            if not principal.may(role):
                raise HTTPException(status_code=403, detail=f"needs the {role} role")
            return principal

        return dependency

    Viewer = Annotated[Principal, Depends(require("viewer"))]
    Reviewer = Annotated[Principal, Depends(require("reviewer"))]
    Admin = Annotated[Principal, Depends(require("admin"))]
    if guard is not None:
        app.include_router(guard.router(Viewer, Reviewer, Admin))

    async def desk_call(fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args)
        except DeskError as exc:
            raise HTTPException(status_code=exc.status, detail=str(exc)) from None

    def queue_filter(
        status: Status = "open",
        severity: Annotated[list[Severity] | None, Query()] = None,
        min_severity: Severity | None = None,
        category: str | None = None,
        tenant: str | None = None,
        service: str | None = None,
        model: str | None = None,
        group_key: str | None = None,
        origin: Origin = "all",
        since_ns: Annotated[int, Query(ge=0)] = 0,
        until_ns: Annotated[int, Query(ge=0)] = 0,
        sort: Sort = "severity",
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> QueueFilter:
        return QueueFilter(
            status=status, severity=severity or [], min_severity=min_severity, category=category, tenant=tenant,
            service=service, model=model, group_key=group_key, origin=origin, since_ns=since_ns, until_ns=until_ns,
            sort=sort, limit=limit, offset=offset,
        )  # fmt: skip

    Filter = Annotated[QueueFilter, Depends(queue_filter)]

    # -- health ---------------------------------------------------------------------

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        """Unauthenticated like the health checks: counters and latencies, no content or ids."""
        body, content_type = metrics_body()
        return Response(body, headers={"Content-Type": content_type})

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> dict[str, str]:
        if not is_ready():
            raise HTTPException(status_code=503, detail="sink not connected to the broker yet")
        return {"status": "ready"}

    # -- queue ----------------------------------------------------------------------

    @app.get("/api/openapi.json", include_in_schema=False)
    async def openapi(_: Viewer) -> dict[str, Any]:
        return app.openapi()

    @app.get("/api/whoami", responses=READ)
    async def whoami(who: Viewer) -> dict[str, str]:
        return {"name": who.name, "role": who.role}

    @app.get("/api/escalations", responses=READ_Q)
    async def escalations(_: Viewer, f: Filter) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await desk_call(desk.queue, f)
        return result

    @app.get("/api/escalations/{bundle_id}", responses=ONE)
    async def escalation(_: Viewer, bundle_id: str) -> dict[str, Any]:
        bundle = await desk_call(desk.bundle, bundle_id)
        if bundle is None:
            raise HTTPException(status_code=404, detail=f"no evidence bundle {bundle_id!r}")
        result: dict[str, Any] = bundle
        return result

    @app.post("/api/escalations/{bundle_id}/claim", responses=CHANGE)
    async def claim(who: Reviewer, bundle_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await desk_call(desk.claim, bundle_id, who.name, who.role)
        return result

    @app.post("/api/escalations/{bundle_id}/unclaim", responses=CHANGE)
    async def unclaim(who: Reviewer, bundle_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await desk_call(desk.unclaim, bundle_id, who.name, who.role)
        return result

    @app.post("/api/escalations/{bundle_id}/resolve", responses=CHANGE_BODY)
    async def resolve(who: Reviewer, bundle_id: str, body: Resolution) -> dict[str, Any]:
        result: dict[str, Any] = await desk_call(desk.resolve, bundle_id, who.name, who.role, body.label, body.note)
        return result

    @app.get("/api/groups", responses=READ_Q)
    async def groups(_: Viewer, f: Filter) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await desk_call(desk.groups, f)
        return result

    @app.post("/api/groups/{group_key}/resolve", responses=GROUP_CHANGE)
    async def resolve_group(who: Reviewer, group_key: str, body: Resolution) -> dict[str, Any]:
        resolved = await desk_call(desk.resolve_group, group_key, who.name, who.role, body.label, body.note)
        return {"group_key": group_key, "resolved": resolved}

    @app.get("/api/queue/stats", responses=READ)
    async def queue_stats(_: Viewer) -> dict[str, Any]:
        result: dict[str, Any] = await desk_call(desk.stats)
        return result

    @app.get("/api/stats", responses=READ_Q)
    async def stats(_: Viewer, since_ns: Annotated[int, Query(ge=0)] = 0, service: str | None = None) -> dict[str, Any]:
        return await asyncio.to_thread(store.stats, since_ns, service)

    # -- raw material (admin) -------------------------------------------------------

    @app.get("/api/labels", responses=READ_Q)
    async def labels(
        _: Admin,
        label: Annotated[list[ReviewLabel] | None, Query()] = None,
        since_ns: Annotated[int, Query(ge=0)] = 0,
    ) -> list[dict[str, Any]]:
        """Reviewed bundles with the text a detector read, for retraining and the reference."""
        rows = await desk_call(desk.labelled, label or list(ReviewLabel), since_ns)
        return [_labelled(row) for row in rows]

    @app.get("/api/reference/samples", responses=READ_Q)
    async def reference_samples(
        _: Admin,
        since_ns: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    ) -> list[str]:
        return await asyncio.to_thread(store.reference_samples, since_ns=since_ns, limit=limit)

    @app.get("/api/drills/runs", responses=READ_Q)
    async def drill_runs(_: Viewer, limit: Annotated[int, Query(ge=1, le=200)] = 20) -> list[dict[str, Any]]:
        return await asyncio.to_thread(store.drill_runs, limit)

    @app.get("/api/drills/runs/{run_id}/observations", responses=READ_Q)
    async def drill_observations(_: Admin, run_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(store.drill_observations, run_id)

    @app.post("/api/drills/runs/{run_id}/results", responses=GROUP_CHANGE)
    async def drill_results(_: Admin, run_id: str, rows: list[DrillCaseResult]) -> dict[str, int]:
        if any(row.run_id != run_id for row in rows):
            raise HTTPException(status_code=409, detail="every row must belong to the run in the path")
        stored = await asyncio.to_thread(store.insert_drill_results, [row.model_dump() for row in rows])
        return {"stored": stored}

    @app.get("/api/tools", responses=READ_Q)
    async def tools(
        _: Viewer, service: str | None = None, changed_only: bool = False,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """The tool registry: what agents were shown, pinned descriptions, rug pulls first."""
        return await asyncio.to_thread(store.tools, service=service, changed_only=changed_only, limit=limit)

    # -- version drift --------------------------------------------------------------

    drift = DriftStore(store)
    safety = (drift_settings or DriftSettings()).safety_category_names

    @app.get("/api/drift/report", responses=READ_Q)
    async def drift_report(
        _: Viewer, service: str | None = None, namespace: str = "",
        hours: Annotated[int | None, Query(ge=1, le=24 * 180)] = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Model versions with their rates (95% intervals) and what changed against their predecessors.
        `namespace`: "" for live traffic, a drill id for a drill case's versions."""
        return await asyncio.to_thread(
            drift_report_of, drift, service=service, namespace=namespace, hours=hours, safety=safety
        )

    @app.get("/api/drift/versions", responses=READ_Q)
    async def drift_versions(
        _: Viewer, namespace: str = "", prefix: str | None = None, service: str | None = None
    ) -> list[dict[str, Any]]:
        """The version registry; `prefix`: every namespace under it (a drill run's cases)."""
        if prefix:
            return await asyncio.to_thread(drift.versions_under, prefix)
        return await asyncio.to_thread(drift.versions, namespace=namespace, service=service)

    @app.get("/api/drift/versions/{version_id}", responses=ONE)
    async def drift_version(_: Viewer, version_id: str) -> dict[str, Any]:
        found = await asyncio.to_thread(drift_detail, drift, version_id)
        if found is None:
            raise HTTPException(status_code=404, detail=f"no model version {version_id!r}")
        return found

    @app.get("/api/dead-letters", responses=READ_Q)
    async def dead_letters(_: Admin, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict[str, Any]]:
        return await asyncio.to_thread(store.dead_letters, limit)

    # -- web desk -------------------------------------------------------------------

    def page(request: Request, name: str) -> Response:
        session = request.cookies.get(SESSION_COOKIE)
        if not session or authenticator.by_session(session, None, changes_state=False) is None:
            return RedirectResponse("/ui/login", status_code=303)
        return HTMLResponse(_web(name))

    @app.get("/ui", include_in_schema=False)
    async def ui_queue(request: Request) -> Response:
        return page(request, "queue.html")

    @app.get("/ui/bundle/{bundle_id}", include_in_schema=False)
    async def ui_bundle(request: Request, bundle_id: str) -> Response:
        return page(request, "bundle.html")

    @app.get("/ui/drills", include_in_schema=False)
    async def ui_drills(request: Request) -> Response:
        return page(request, "drills.html")

    @app.get("/ui/guard", include_in_schema=False)
    async def ui_guard(request: Request) -> Response:
        return page(request, "guard.html")

    if perf is not None:
        from pipeline.perf.api import add_perf_routes

        add_perf_routes(app, perf, Viewer, page)

    @app.get("/ui/drift", include_in_schema=False)
    async def ui_drift(request: Request) -> Response:
        return page(request, "drift.html")

    @app.get("/ui/login", include_in_schema=False)
    async def ui_login_form() -> Response:
        return HTMLResponse(_web("login.html"))

    @app.get("/ui/static/{name}", include_in_schema=False)
    async def ui_static(name: str) -> Response:
        types = {"app.js": "text/javascript", "perf.js": "text/javascript", "style.css": "text/css"}
        types = {"app.js": "text/javascript", "drift.js": "text/javascript", "style.css": "text/css"}
        if name not in types:
            raise HTTPException(status_code=404)
        return Response(_web(name), media_type=types[name], headers={"Cache-Control": "no-cache"})

    @app.post("/ui/login", include_in_schema=False)
    async def ui_login(request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
            raise HTTPException(status_code=403, detail="cross-origin login refused")
        form = parse_qs((await request.body()).decode(errors="replace"))
        principal = authenticator.by_token(form.get("token", [""])[0].strip())
        if principal is None:
            return RedirectResponse("/ui/login?failed=1", status_code=303)
        session, csrf = authenticator.open_session(principal)
        response = RedirectResponse("/ui", status_code=303)
        cookie = {"max_age": SESSION_TTL_S, "samesite": "strict", "secure": secure_cookies, "path": "/"}
        response.set_cookie(SESSION_COOKIE, session, httponly=True, **cookie)  # type: ignore[arg-type]
        response.set_cookie(CSRF_COOKIE, csrf, httponly=False, **cookie)  # type: ignore[arg-type]
        return response

    @app.post("/ui/logout", include_in_schema=False)
    async def ui_logout(_: Viewer, request: Request) -> Response:
        authenticator.close_session(request.cookies.get(SESSION_COOKIE, ""))
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        response.delete_cookie(CSRF_COOKIE, path="/")
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = ErrorBody(detail=str(exc.detail))
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # Starlette names only the first route on the path (GET and POST are two)
            headers = {**(headers or {}), "Allow": ", ".join(_methods_on(app, request.scope))}
        return JSONResponse(body.model_dump(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """The offending input is not echoed back: only where it was and what was wrong."""
        errors = [
            FieldError(loc=[p if isinstance(p, int) else str(p) for p in e.get("loc", ())], msg=str(e.get("msg", "")),
                       type=str(e.get("type", "")))
            for e in exc.errors()
        ]  # fmt: skip
        return JSONResponse(ErrorBody(detail="request validation failed", errors=errors).model_dump(), status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        """Logged with its traceback; the caller gets the error's kind, never internals or data."""
        log.error("triage API error on %s", request.url.path, exc_info=exc)
        return JSONResponse(ErrorBody(detail=f"internal error: {type(exc).__name__}").model_dump(), status_code=500)

    return app


def _methods_on(app: FastAPI, scope: Any) -> list[str]:
    """Every method the app's routes answer on the request's path, for a 405's `Allow` (asked of
    the router per method, since included routers hide their routes)."""
    from starlette.routing import Match

    def answers(method: str) -> bool:
        probe = {**scope, "method": method}
        return any(route.matches(probe)[0] == Match.FULL for route in app.router.routes)

    return [m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE") if answers(m)]


def _labelled(row: dict[str, Any]) -> dict[str, Any]:
    bundle = json.loads(row["bundle"])
    events = [LLMEvent.model_validate(e) for e in bundle.get("events", [])]
    return {
        "bundle_id": row["bundle_id"],
        "label": row["label"],
        "text": "\n".join(screening_text(e) for e in events),
        "categories": list(row["categories"]),
        "resolved_by": row["resolved_by"],
        "resolved_at": str(row["resolved_at"]),
    }
