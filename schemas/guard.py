"""What the guard says and records: inline actions, session actions (the `actions` topic that
gateways enforce) and relaxation grants (stored append-only in ClickHouse).

Records here are wire contracts: gateways other than ours read `SessionAction` from Kafka, so
fields are only ever added, with defaults.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class GuardAction(StrEnum):
    """What an enforcement point does with a request or a session, least to most restrictive."""

    ALLOW = "allow"
    #: Pass, with e-mail addresses, phone numbers and keys replaced by markers.
    REDACT = "redact"
    #: Pass, without the tools whose scope is write, network, payment or code execution.
    READ_ONLY_TOOLS = "read_only_tools"
    #: Do not call the model with this; answer with the deployment's fallback message.
    SAFE_FALLBACK = "safe_fallback"
    #: Refuse (answered with the block message).
    BLOCK = "block"

    @property
    def rank(self) -> int:
        return _ACTION_RANK[self]


_ACTION_RANK = {a: i for i, a in enumerate(GuardAction)}


def strictest(*actions: GuardAction | None) -> GuardAction:
    return max((a for a in actions if a is not None), key=lambda a: a.rank, default=GuardAction.ALLOW)


class ActionKind(StrEnum):
    ISSUE = "issue"
    #: A reviewer lifted an earlier action (`lifts` names it) before it expired.
    LIFT = "lift"


class SessionAction(BaseModel):
    """One record on the `actions` topic, keyed by session id. An ISSUE holds for its session
    until `expires_ns`; a LIFT ends the action it names. Enforcement points keep the latest
    unexpired, unlifted ISSUE per session."""

    model_config = ConfigDict(frozen=True)

    record_id: str
    kind: ActionKind = ActionKind.ISSUE
    session_id: str
    tenant: str = ""
    service: str = ""
    action: GuardAction = GuardAction.ALLOW
    #: For a LIFT: the record_id of the ISSUE it lifts.
    lifts: str | None = None
    reason: str = ""
    #: The bundle that reached the policy's action threshold, when one did.
    bundle_id: str | None = None
    categories: tuple[str, ...] = ()
    #: Set when a relaxation grant changed what the action would otherwise have been.
    grant_id: str | None = None
    profile: str = ""
    policy_version: str = ""
    #: Who: "policy" for actions from the stream, the reviewer's name for a lift.
    actor: str = "policy"
    issued_ns: int
    expires_ns: int = 0

    def active(self, now_ns: int) -> bool:
        return self.kind is ActionKind.ISSUE and self.action is not GuardAction.ALLOW and now_ns < self.expires_ns


def action_record_id(session_id: str, cause: str, action: str) -> str:
    """Stable per (session, cause, action): a replayed bundle issues the same record, not a second one."""
    return hashlib.blake2b(f"action:{session_id}:{cause}:{action}".encode(), digest_size=12).hexdigest()


class Grant(BaseModel):
    """An authorised relaxation: in `tenant`, for the `services` and `users` named (empty: all),
    the `categories` do not make the guard act until `expires_ns`. Monitoring stays on: the
    events are screened and stored as usual, and each decision the grant changed carries its id."""

    model_config = ConfigDict(frozen=True)

    grant_id: str
    tenant: str
    categories: tuple[str, ...]
    services: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    reason: str
    granted_by: str
    granted_ns: int
    expires_ns: int
    revoked_by: str = ""
    revoked_ns: int = 0
    revoke_reason: str = ""

    def applies(self, tenant: str, service: str, user: str, now_ns: int) -> bool:
        return (
            not self.revoked_ns
            and self.granted_ns <= now_ns < self.expires_ns
            and tenant == self.tenant
            and (not self.services or service in self.services)
            and (not self.users or user in self.users)
        )


class GrantRequest(BaseModel):
    """What an admin asks for; the store checks it against the policy before anything is kept."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant: str = Field(min_length=1, max_length=128)
    categories: tuple[str, ...] = Field(min_length=1, max_length=32)
    services: tuple[str, ...] = Field(default=(), max_length=64)
    users: tuple[str, ...] = Field(default=(), max_length=1000)
    reason: str = Field(min_length=8, max_length=2000)
    #: With a time zone (a naive time is refused: whose midnight would it be?).
    expires_at: AwareDatetime

    @property
    def expires_ns(self) -> int:
        return int(self.expires_at.timestamp() * 1_000_000_000)
