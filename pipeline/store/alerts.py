"""Webhook alerts for new bundles at or above a severity: generic JSON and Slack-compatible.

Deduplicated and rate-limited per group of similar bundles: the first of a group alerts at
once; the rest within the window are counted and reported with the next alert of that
group. Drills never alert. Sending runs in its own task off a bounded queue, so a slow or
dead webhook never holds back the sink; what cannot be queued is counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from pipeline.settings import Settings
from schemas.evidence import EvidenceBundle, Severity
from schemas.guard import SessionAction

log = logging.getLogger(__name__)

QUEUE_MAX = 10_000
SEND_TIMEOUT_S = 5.0


@dataclass
class _Group:
    last_sent: float = float("-inf")
    suppressed: int = 0


@dataclass
class AlertCounters:
    sent: int = 0
    suppressed: int = 0
    failed: int = 0
    dropped: int = 0
    skipped_drills: int = 0
    below_severity: int = 0
    by_group: dict[str, _Group] = field(default_factory=dict)


class Alerter:
    def __init__(
        self, *, webhook_url: str = "", slack_url: str = "", min_severity: Severity = Severity.HIGH,
        window_s: float = 600.0, ui_url: str = "", clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.webhook_url = webhook_url
        self.slack_url = slack_url
        self.min_severity = min_severity
        self.window_s = window_s
        self.ui_url = ui_url
        self.clock = clock
        self.counters = AlertCounters()
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_MAX)

    @classmethod
    def from_settings(cls, settings: Settings) -> Alerter | None:
        slack = settings.alert_slack_webhook_url.get_secret_value()
        if not settings.alert_webhook_url and not slack:
            return None
        return cls(
            webhook_url=settings.alert_webhook_url,
            slack_url=slack,
            min_severity=Severity(settings.alert_min_severity),
            window_s=settings.alert_group_window_s,
            ui_url=f"{settings.api_url}/ui/bundle/",
        )

    def submit(self, bundles: list[EvidenceBundle]) -> None:
        """Called with newly stored bundles; decides at once, sends later."""
        for bundle in bundles:
            alert = self.decide(bundle)
            if alert is None:
                continue
            try:
                self._queue.put_nowait(alert)
            except asyncio.QueueFull:
                self.counters.dropped += 1
                log.error("alert queue full: alert for bundle %s dropped (the bundle is stored)", bundle.bundle_id)

    def submit_actions(self, actions: list[SessionAction]) -> None:
        """Session actions the stream issued (issue 19): one message each, never grouped away."""
        for action in actions:
            alert = {
                "type": "oodwatch.session_action", "record_id": action.record_id, "action": action.action.value,
                "session_id": action.session_id, "tenant": action.tenant, "service": action.service,
                "reason": action.reason, "bundle_id": action.bundle_id or "", "categories": list(action.categories),
                "grant_id": action.grant_id or "", "expires_ns": action.expires_ns,
                "url": self.ui_url + action.bundle_id if self.ui_url and action.bundle_id else "",
            }  # fmt: skip
            try:
                self._queue.put_nowait(alert)
            except asyncio.QueueFull:
                self.counters.dropped += 1
                log.error("alert queue full: session action %s not sent (it is stored)", action.record_id)

    def submit_slo(self, alert: dict[str, Any]) -> None:
        """An SLO burn-rate alert (pipeline.perf), already deduplicated per firing episode by its
        raiser; drill alerts never get here, and are refused if they do."""
        if alert.get("drill_id"):
            self.counters.skipped_drills += 1
            return
        try:
            self._queue.put_nowait({"type": "oodwatch.slo_burn", **alert})
        except asyncio.QueueFull:
            self.counters.dropped += 1
            log.error("alert queue full: SLO alert for %s dropped (it is stored)", alert.get("slo"))

    def submit_drift(self, alert: dict[str, Any]) -> None:
        """A model version whose safety-relevant rates rose (the drift tracker decides; it never
        sends drills). One alert per version: the tracker alerts on its first such comparison."""
        try:
            self._queue.put_nowait(alert)
        except asyncio.QueueFull:
            self.counters.dropped += 1
            log.error("alert queue full: drift alert for %s dropped", alert.get("version", "?"))

    def decide(self, bundle: EvidenceBundle) -> dict[str, Any] | None:
        if bundle.drill_id:
            self.counters.skipped_drills += 1
            return None
        if bundle.severity.rank < self.min_severity.rank:
            self.counters.below_severity += 1
            return None
        key = bundle.group_key or bundle.bundle_id
        group = self.counters.by_group.setdefault(key, _Group())
        now = self.clock()
        if now - group.last_sent < self.window_s:
            group.suppressed += 1
            self.counters.suppressed += 1
            return None
        similar, group.suppressed, group.last_sent = group.suppressed, 0, now
        return {
            "bundle_id": bundle.bundle_id,
            "group_key": key,
            "severity": bundle.severity.value,
            "categories": list(bundle.categories),
            "service": bundle.service,
            "tenant": bundle.tenant,
            "session_id": bundle.session_id,
            "max_score": round(bundle.max_score, 4),
            "judge_status": bundle.judge_status.value,
            "similar_since_last_alert": similar,
            "url": self.ui_url + bundle.bundle_id if self.ui_url else "",
        }

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=SEND_TIMEOUT_S) as client:
            while True:
                alert = await self._queue.get()
                await self._send(client, alert)

    async def _send(self, client: httpx.AsyncClient, alert: dict[str, Any]) -> None:
        targets: list[tuple[str, dict[str, Any]]] = []
        drift = alert.get("type") == "oodwatch.drift"
        if self.webhook_url:
            targets.append((self.webhook_url, alert if drift else {"type": "oodwatch.escalation", **alert}))
        if self.slack_url:
            slo = alert.get("type") == "oodwatch.slo_burn"
            body = slack_drift_message(alert) if drift else slo_slack_message(alert) if slo else slack_message(alert)
            targets.append((self.slack_url, body))
        if alert.get("type") == "oodwatch.session_action":
            targets = [(url, alert if url == self.webhook_url else slack_action_message(alert)) for url, _ in targets]
        for url, body in targets:
            try:
                response = await client.post(url, json=body)
                response.raise_for_status()
                self.counters.sent += 1
            except httpx.HTTPError as exc:
                self.counters.failed += 1
                # The URL may carry a secret (Slack's does): name the target kind, not the URL.
                kind = "slack" if url == self.slack_url else "webhook"
                what = alert.get("bundle_id") or alert.get("record_id") or alert.get("slo") or alert.get("version", "")
                log.warning("alert to %s failed for %s: %s", kind, what, type(exc).__name__)


def slack_message(alert: dict[str, Any]) -> dict[str, Any]:
    """Slack's incoming-webhook shape. Only pipeline-made fields: no prompt text reaches chat."""
    more = f" (+{alert['similar_since_last_alert']} similar)" if alert["similar_since_last_alert"] else ""
    link = f" <{alert['url']}|open>" if alert["url"] else ""
    text = (
        f":rotating_light: oodwatch {alert['severity']} escalation in {alert['service']}{more}: "
        f"{', '.join(alert['categories'])} (score {alert['max_score']}){link}"
    )
    return {"text": text}


def slack_action_message(alert: dict[str, Any]) -> dict[str, Any]:
    """A session action in Slack's shape: pipeline-made fields only."""
    link = f" <{alert['url']}|evidence>" if alert["url"] else ""
    grant = f" (grant {alert['grant_id']})" if alert["grant_id"] else ""
    text = (
        f":no_entry: oodwatch put a session of {alert['service']} under {alert['action']}{grant}: "
        f"{alert['reason']}{link}"
    )
    return {"text": text}


def slo_slack_message(alert: dict[str, Any]) -> dict[str, Any]:
    text = (
        f":hourglass: oodwatch SLO {alert['severity']}: {alert['slo']} ({alert['objective']}) burning "
        f"{alert['burn_long']}x over {alert['long_window_s'] // 60} min and {alert['burn_short']}x over "
        f"{alert['short_window_s'] // 60} min; {alert['budget_left']:.0%} of the error budget left"
    )
    return {"text": text}


def slack_drift_message(alert: dict[str, Any]) -> dict[str, Any]:
    """Names and numbers only: no model output reaches chat."""
    moved = "; ".join(
        f"{m['test']} {m['old_rate']:.1%} -> {m['new_rate']:.1%} (diff {m['difference']:+.1%}, 95% CI "
        f"{m['interval'][0]:+.1%}..{m['interval'][1]:+.1%})"
        for m in alert["moved"]
    )
    link = f" <{alert['url']}|report>" if alert.get("url") else ""
    return {
        "text": f":warning: oodwatch: model version {alert['version']} moved from {alert['baseline']} after "
        f"{alert['events']} events: {moved}{link}"
    }
