"""A no-op OTLP sink: reads each request and answers 200. The harness's own ceiling is measured
against it. `python -m pipeline.bench.loadtest.noop PORT`."""

from __future__ import annotations

import sys

from aiohttp import web


async def _traces(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=b"", content_type="application/x-protobuf")


async def _health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", _traces)
    app.router.add_get("/healthz", _health)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
