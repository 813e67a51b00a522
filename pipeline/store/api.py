"""Triage API (minimal): the ranked escalation queue, one evidence bundle, pipeline stats."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pipeline.store.clickhouse import Store

log = logging.getLogger(__name__)
_bearer = HTTPBearer(auto_error=False)


def create_api(
    store: Store,
    token: str,
    *,
    background: Callable[[], Any] | None = None,
    is_ready: Callable[[], bool] = lambda: True,
) -> FastAPI:
    """`background` is started with the app and cancelled with it (the sink, in the store process)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(background()) if background else None
        try:
            yield
        finally:
            if task:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    app = FastAPI(title="oodwatch triage API", version="0.1.0", lifespan=lifespan)

    def authenticated(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise HTTPException(
                status_code=401, detail="missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    auth = [Depends(authenticated)]

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> dict[str, str]:
        if not is_ready():
            raise HTTPException(status_code=503, detail="sink not connected to the broker yet")
        return {"status": "ready"}

    @app.get("/api/escalations", dependencies=auth)
    async def escalations(
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        state: str = "open",
        since_ns: Annotated[int, Query(ge=0)] = 0,
    ) -> list[dict[str, Any]]:
        return await asyncio.to_thread(store.queue, limit=limit, state=state, since_ns=since_ns)

    @app.get("/api/escalations/{bundle_id}", dependencies=auth)
    async def escalation(bundle_id: str) -> dict[str, Any]:
        bundle = await asyncio.to_thread(store.bundle, bundle_id)
        if bundle is None:
            raise HTTPException(status_code=404, detail=f"no evidence bundle {bundle_id!r}")
        return bundle

    @app.get("/api/stats", dependencies=auth)
    async def stats(since_ns: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
        return await asyncio.to_thread(store.stats, since_ns)

    @app.get("/api/reference/samples", dependencies=auth)
    async def reference_samples(
        since_ns: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000
    ) -> list[str]:
        return await asyncio.to_thread(store.reference_samples, since_ns=since_ns, limit=limit)

    @app.get("/api/dead-letters", dependencies=auth)
    async def dead_letters(limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict[str, Any]]:
        return await asyncio.to_thread(store.dead_letters, limit)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        """Logged with its traceback; the caller gets the error's kind, never internals or data."""
        log.error("triage API error on %s", request.url.path, exc_info=exc)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    return app
