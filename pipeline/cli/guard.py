"""`oodwatch guard`, `oodwatch guard-proxy`, `oodwatch grants ...`, `oodwatch actions ...`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.cli.client import TriageClient
from pipeline.settings import Settings


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class GuardClient(TriageClient):
    def grants(self, *, active: bool, tenant: str | None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get("/api/grants", active=active, tenant=tenant)
        return result

    def create_grant(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._post("/api/grants", body)
        return result

    def revoke_grant(self, grant_id: str, reason: str) -> dict[str, Any]:
        result: dict[str, Any] = self._post(f"/api/grants/{grant_id}/revoke", {"reason": reason})
        return result

    def actions(self, *, active: bool, session_id: str | None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get("/api/actions", active=active, session_id=session_id)
        return result

    def lift(self, record_id: str, note: str) -> dict[str, Any]:
        result: dict[str, Any] = self._post(f"/api/actions/{record_id}/lift", {"note": note})
        return result


def _client(settings: Settings) -> GuardClient:
    from pipeline.store.auth import api_token

    return GuardClient(settings.api_url, api_token(settings))


def _api(call: Any) -> Any:
    """The API's answer, or the reason it refused (exit 3) / could not be reached (exit 2)."""
    import httpx

    try:
        return call()
    except httpx.HTTPStatusError as exc:
        try:
            detail = exc.response.json().get("detail")
        except ValueError:
            detail = exc.response.text[:300]
        _say(f"oodwatch: refused ({exc.response.status_code}): {detail}")
        raise SystemExit(3) from None
    except httpx.HTTPError as exc:
        host = exc.request.url.host
        _say(f"oodwatch: the triage API at {host} did not answer ({type(exc).__name__}): is the stack up?")
        raise SystemExit(2) from None


def expiry(args: argparse.Namespace) -> str:
    """--for 8h | 30m | 2d, or --until an ISO time with a zone."""
    if args.until:
        when = datetime.fromisoformat(args.until)
        if when.tzinfo is None:
            raise SystemExit("oodwatch: --until needs a time zone (e.g. 2026-12-31T18:00+00:00)")
        return when.isoformat()
    from pipeline.perf.report import parse_since  # the one duration form (15m, 8h, 7d)

    try:
        seconds = parse_since(args.duration or "")
    except ValueError as exc:
        raise SystemExit(f"oodwatch: give --for N[m|h|d] or --until ISO-TIME ({exc})") from None
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M UTC") if ns else ""


def cmd_guard(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline.cli.main import _serve
    from pipeline.guard.server import serve_guard
    from pipeline.logs import configure

    configure()
    return _serve(serve_guard(settings))


def cmd_guard_proxy(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline.cli.main import _serve
    from pipeline.guard.proxy import ProxyConfig, serve_proxy
    from pipeline.logs import configure
    from pipeline.policy import RoutingPolicy
    from pipeline.store.auth import api_token

    configure()
    guard = RoutingPolicy.load(settings.policy_file).guard
    token = settings.guard_token.get_secret_value() or api_token(settings)
    config = ProxyConfig(
        upstream=args.upstream.rstrip("/"), guard_url=(args.guard_url or settings.guard_url).rstrip("/"),
        guard_token=token, service=args.service, tenant=args.tenant or "", fail_mode=args.fail_mode,
        check_responses=not args.no_response_check, block_message=guard.block_message,
        fallback_message=guard.fallback_message,
    )  # fmt: skip
    otlp = None if args.no_otel else (args.otlp_endpoint or f"{settings.receiver_url}/v1/traces")
    return _serve(serve_proxy(settings, config, port=args.port or settings.guard_proxy_port, otlp_endpoint=otlp))


def cmd_grants_list(settings: Settings, args: argparse.Namespace) -> int:
    rows = _api(lambda: _client(settings).grants(active=not args.all, tenant=args.tenant))
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no grants" + ("" if args.all else " in force (--all lists expired and revoked ones)"))
    for row in rows:
        g = row["grant"]
        scope = ", ".join(
            filter(None, [",".join(g["services"]) or "all services", ",".join(g["users"]) or "all users"])
        )
        print(f"{g['grant_id']}  {row['state']:<8} {g['tenant']}  {','.join(g['categories'])}  ({scope})  "
              f"until {_when(g['expires_ns'])}  by {g['granted_by']}: {g['reason']}")  # fmt: skip
    return 0


def cmd_grants_create(settings: Settings, args: argparse.Namespace) -> int:
    body = {
        "tenant": args.tenant, "categories": args.category, "services": args.service or [], "users": args.user or [],
        "reason": args.reason, "expires_at": expiry(args),
    }  # fmt: skip
    row = _api(lambda: _client(settings).create_grant(body))
    g = row["grant"]
    print(json.dumps(row) if args.json else f"granted {g['grant_id']}: {','.join(g['categories'])} relaxed for "
          f"{g['tenant']} until {_when(g['expires_ns'])}")  # fmt: skip
    return 0


def cmd_grants_revoke(settings: Settings, args: argparse.Namespace) -> int:
    row = _api(lambda: _client(settings).revoke_grant(args.grant_id, args.reason))
    print(json.dumps(row) if args.json else f"revoked {args.grant_id}")
    return 0


def cmd_actions_list(settings: Settings, args: argparse.Namespace) -> int:
    rows = _api(lambda: _client(settings).actions(active=not args.all, session_id=args.session))
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    if not rows:
        print("no session actions" + ("" if args.all else " in force (--all lists expired and lifted ones)"))
    for r in rows:
        grant = f" grant {r['grant_id']}" if r["grant_id"] else ""
        print(f"{r['record_id']}  {r['state']:<7} {r['action']:<15} session {r['session_id']}  {r['service']}  "
              f"until {str(r['expires_at'])[:19]}{grant}: {r['reason']}")  # fmt: skip
    return 0


def cmd_actions_lift(settings: Settings, args: argparse.Namespace) -> int:
    row = _api(lambda: _client(settings).lift(args.record_id, args.note))
    print(json.dumps(row) if args.json else f"lifted {args.record_id}")
    return 0


def add_commands(sub: Any) -> None:
    sub.add_parser("guard", help="the inline guard: POST /v1/guard, and session actions from the stream").set_defaults(
        func=cmd_guard
    )
    proxy = sub.add_parser("guard-proxy", help="an OpenAI-compatible chat-completions proxy enforcing the guard")
    proxy.add_argument("--upstream", required=True, help="the model's OpenAI-compatible base URL (https://host/v1)")
    proxy.add_argument("--port", type=int, default=None, help="listen port (default: OODWATCH_GUARD_PROXY_PORT)")
    proxy.add_argument(
        "--service", default="guard-proxy", help="the service name checks carry (picks the deployment tier)"
    )
    proxy.add_argument("--tenant", default="", help="the tenant when requests do not say (X-Oodwatch-Tenant)")
    proxy.add_argument(
        "--guard-url", default="", help="the guard (default: OODWATCH_GUARD_BASE_URL or host:guard port)"
    )
    proxy.add_argument(
        "--fail-mode", choices=["open", "closed"], default="open",
        help="when the guard cannot be reached: pass (open) or answer the fallback (closed)",
    )  # fmt: skip
    proxy.add_argument("--no-response-check", action="store_true", help="check requests only")
    proxy.add_argument("--otlp-endpoint", default="", help="where its spans go (default: the receiver's /v1/traces)")
    proxy.add_argument("--no-otel", action="store_true", help="export no spans")
    proxy.set_defaults(func=cmd_guard_proxy)

    grants = sub.add_parser("grants", help="relaxation grants (admin)").add_subparsers(
        dest="grants_command", required=True
    )
    listing = grants.add_parser("list", help="grants in force (--all: every grant with its state)")
    listing.add_argument("--all", action="store_true")
    listing.add_argument("--tenant", default=None)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_grants_list)
    create = grants.add_parser("create", help="relax categories for a tenant (and services/users) until an expiry")
    create.add_argument("--tenant", required=True)
    create.add_argument("--category", action="append", required=True, help="a category to relax (repeat)")
    create.add_argument("--service", action="append", help="only for this service (repeat; default: all)")
    create.add_argument("--user", action="append", help="only for this end user (repeat; default: all)")
    create.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    create.add_argument("--for", dest="duration", default=None, help="how long: 30m, 8h, 7d")
    create.add_argument("--until", default=None, help="or until an ISO time with a zone")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_grants_create)
    revoke = grants.add_parser("revoke", help="end a grant now")
    revoke.add_argument("grant_id")
    revoke.add_argument("--reason", required=True)
    revoke.add_argument("--json", action="store_true")
    revoke.set_defaults(func=cmd_grants_revoke)

    actions = sub.add_parser("actions", help="session actions from the stream").add_subparsers(
        dest="actions_command", required=True
    )
    act_list = actions.add_parser("list", help="actions in force (--all: with expired and lifted ones)")
    act_list.add_argument("--all", action="store_true")
    act_list.add_argument("--session", default=None)
    act_list.add_argument("--json", action="store_true")
    act_list.set_defaults(func=cmd_actions_list)
    lift = actions.add_parser("lift", help="end an action before it expires (reviewer; audited)")
    lift.add_argument("record_id")
    lift.add_argument("--note", required=True, help="why (kept in the audit trail)")
    lift.add_argument("--json", action="store_true")
    lift.set_defaults(func=cmd_actions_lift)
