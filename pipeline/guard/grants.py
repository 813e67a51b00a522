"""Relaxation grants: checked against the policy when asked for, and held by the guard.

A grant is refused with the reason when it names a tenant the policy does not know, a category
that is non-relaxable (or not listed as relaxable), an expiry in the past or beyond the
policy's longest grant. The guard re-reads active grants from the triage API and checks each
one against its own policy again when it applies it, so a grant stored under an older policy
relaxes nothing the current one forbids. Expiry is compared at decision time, so an expired
grant stops applying at once, without a restart or a refresh. If grants cannot be re-read for
longer than the stale bound, none applies: the guard fails strict, not relaxed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pipeline.policy import GuardPolicy
from schemas.guard import Grant, GrantRequest

log = logging.getLogger(__name__)

DAY_NS = 86_400 * 1_000_000_000


class GrantRefused(ValueError):
    """A grant request the policy does not allow; the message says why."""


def check_grant(policy: GuardPolicy, request: GrantRequest, granted_by: str, now_ns: int) -> Grant:
    """The grant to store, or GrantRefused naming every reason it cannot be."""
    problems: list[str] = []
    if request.tenant not in policy.tenants:
        known = ", ".join(sorted(policy.tenants)) or "none"
        problems.append(f"unknown tenant {request.tenant!r} (tenants in the policy: {known})")
    for category in dict.fromkeys(request.categories):
        base = category.split("/", 1)[0]
        reason = policy.non_relaxable.get(category) or policy.non_relaxable.get(base)
        if reason:
            problems.append(f"category {category!r} is non-relaxable: {reason}")
        elif not policy.relaxable_category(category):
            problems.append(
                f"category {category!r} is not relaxable (relaxable: {', '.join(policy.relaxable) or 'none'})"
            )
    if request.expires_ns <= now_ns:
        problems.append(f"expiry {_iso(request.expires_ns)} is not in the future (now {_iso(now_ns)})")
    elif request.expires_ns - now_ns > policy.max_grant_days * DAY_NS:
        problems.append(f"expiry {_iso(request.expires_ns)} is more than {policy.max_grant_days:g} days away")
    if any(not s.strip() for s in (*request.services, *request.users, *request.categories)):
        problems.append("services, users and categories must not be blank")
    if problems:
        raise GrantRefused("; ".join(problems))
    return Grant(
        grant_id="g-" + uuid.uuid4().hex[:16],
        tenant=request.tenant,
        categories=tuple(dict.fromkeys(request.categories)),
        services=tuple(dict.fromkeys(request.services)),
        users=tuple(dict.fromkeys(request.users)),
        reason=request.reason,
        granted_by=granted_by,
        granted_ns=now_ns,
        expires_ns=request.expires_ns,
    )


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="seconds")


class GrantBook:
    """The grants the guard applies: replaced wholesale by each successful read."""

    def __init__(
        self, policy: GuardPolicy, *, max_stale_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy
        self.max_stale_s = max_stale_s
        self.clock = clock
        self._grants: tuple[Grant, ...] = ()
        self._read_at: float | None = None
        self.refresh_failures = 0
        self.stale_refusals = 0

    def replace(self, grants: Sequence[Grant]) -> None:
        self._grants = tuple(grants)
        self._read_at = self.clock()

    @property
    def fresh(self) -> bool:
        return self._read_at is not None and self.clock() - self._read_at <= self.max_stale_s

    def covering(self, tenant: str, service: str, user: str, now_ns: int) -> list[Grant]:
        """Grants that apply to this tenant, service and user now; none while stale."""
        if not self._grants:
            return []
        if not self.fresh:
            self.stale_refusals += 1
            return []
        return [g for g in self._grants if g.applies(tenant, service, user, now_ns)]

    def relaxing(self, grants: Sequence[Grant], category: str) -> Grant | None:
        """The grant that relaxes `category` (top-level, or tier 2's `tier2:x`), if any may."""
        if not self.policy.relaxable_category(category):
            return None
        base = category.removeprefix("tier2:").split("/", 1)[0]
        return next((g for g in grants if base in g.categories), None)

    def snapshot(self) -> dict[str, Any]:
        return {
            "grants": len(self._grants),
            "fresh": self.fresh,
            "refresh_failures": self.refresh_failures,
            "stale_refusals": self.stale_refusals,
        }

    async def follow(self, url: str, token: str, every_s: float) -> None:
        """Re-read active grants from the triage API until cancelled."""
        import httpx

        warned = False
        async with httpx.AsyncClient(timeout=5.0, headers={"Authorization": f"Bearer {token}"}) as client:
            while True:
                try:
                    response = await client.get(f"{url}/api/grants", params={"active": "true", "limit": 10_000})
                    response.raise_for_status()
                    self.replace([Grant.model_validate(row["grant"]) for row in response.json()])
                    if warned:
                        log.info("relaxation grants read again (%d active)", len(self._grants))
                    warned = False
                except Exception as exc:  # the store is away or refuses: keep the last read until stale
                    self.refresh_failures += 1
                    if not warned:
                        log.warning(
                            "cannot read relaxation grants from %s (%s); they stop applying after %.0f s",
                            url, type(exc).__name__, self.max_stale_s,
                        )  # fmt: skip
                        warned = True
                await asyncio.sleep(every_s)
