"""A record a stage could not process, kept with the reason instead of being lost."""

from __future__ import annotations

import base64
import hashlib

from pydantic import BaseModel, ConfigDict

MAX_PAYLOAD_BYTES = 64 * 1024


class DeadLetter(BaseModel):
    model_config = ConfigDict(frozen=True)

    dead_letter_id: str
    stage: str
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int
    #: The item's position inside an envelope record; -1: the record as a whole.
    source_item: int = -1
    payload_b64: str
    payload_bytes: int
    failed_ns: int

    @classmethod
    def of(
        cls, *, stage: str, reason: str, topic: str, partition: int, offset: int, payload: bytes, failed_ns: int,
        item: int = -1,
    ) -> DeadLetter:  # fmt: skip
        """Id from the source position (and the item's place in an envelope), so a replayed bad
        record is one dead letter, not two."""
        position = f"{topic}:{partition}:{offset}:{stage}" + (f":{item}" if item >= 0 else "")
        ident = hashlib.blake2b(position.encode(), digest_size=16).hexdigest()
        return cls(
            dead_letter_id=ident,
            stage=stage,
            reason=reason[:2000],
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            source_item=item,
            payload_b64=base64.b64encode(payload[:MAX_PAYLOAD_BYTES]).decode(),
            payload_bytes=len(payload),
            failed_ns=failed_ns,
        )
