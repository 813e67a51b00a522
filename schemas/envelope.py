"""Envelopes: one Kafka record carrying a batch of items bound for one partition.

One record per event costs more than tier 1 itself (Faust's per-record machinery, ~190 us here),
so internal topics carry batches, the way the Collector's `otlp_spans` records carry whole
requests. The value is a JSON array of items; the format rides in a record header, and a record
without it is read as one item (the one-event records of the previous release).

A bad item does not take its envelope with it: when the array does not validate as a whole, each
item is validated alone and the ones that fail come back with their reason and their own JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

#: Record header naming the value's format; absent: one bare item (the previous release).
FORMAT_HEADER = "oodwatch-format"
ENVELOPE_V1 = b"envelope/1"
ENVELOPE_HEADERS = [(FORMAT_HEADER, ENVELOPE_V1)]
#: How many events an envelope carries (screenings: rows), so a consumer can count without parsing.
COUNT_HEADER = "oodwatch-events"


def envelope_headers(events: int) -> list[tuple[str, bytes]]:
    return [*ENVELOPE_HEADERS, (COUNT_HEADER, str(events).encode())]


def events_in(headers: Sequence[tuple[str, bytes]] | None) -> int:
    """Events a record carries: its count header, or 1 (a one-item record)."""
    for key, value in headers or ():
        if key == COUNT_HEADER:
            return int(value)
    return 1


Item = TypeVar("Item", bound=BaseModel)


@dataclass(frozen=True)
class BadItem:
    """An item that did not validate: its position in the record, why, and its own bytes."""

    index: int
    reason: str
    payload: bytes


@dataclass(frozen=True)
class Decoded(Generic[Item]):
    items: list[Item]
    bad: list[BadItem]


def is_envelope(headers: Sequence[tuple[str, bytes]] | None) -> bool:
    return any(key == FORMAT_HEADER and value == ENVELOPE_V1 for key, value in headers or ())


class EnvelopeCodec(Generic[Item]):
    """Encodes and decodes envelopes of one item type; the validators are built once."""

    def __init__(self, model: type[Item]) -> None:
        self.model = model
        self._many: TypeAdapter[list[Item]] = TypeAdapter(list[model])  # type: ignore[valid-type]

    def encode(self, items: Sequence[Item]) -> bytes:
        return self._many.dump_json(list(items))

    def decode(self, value: bytes | None, headers: Sequence[tuple[str, bytes]] | None) -> Decoded[Item]:
        raw = value or b""
        if not is_envelope(headers):
            try:
                return Decoded([self.model.model_validate_json(raw)], [])
            except ValidationError as exc:
                return Decoded([], [BadItem(0, self._reason(exc), raw)])
        try:
            return Decoded(self._many.validate_json(raw), [])
        except ValidationError:
            return self._one_by_one(raw)

    def _one_by_one(self, raw: bytes) -> Decoded[Item]:
        try:
            parsed: Any = json.loads(raw)
        except ValueError as exc:
            return Decoded([], [BadItem(-1, f"not a JSON envelope: {exc}", raw)])
        if not isinstance(parsed, list):
            return Decoded([], [BadItem(-1, f"an envelope is a JSON array, got {type(parsed).__name__}", raw)])
        items: list[Item] = []
        bad: list[BadItem] = []
        for index, item in enumerate(parsed):
            try:
                items.append(self.model.model_validate(item))
            except ValidationError as exc:
                bad.append(BadItem(index, self._reason(exc), json.dumps(item).encode()))
        return Decoded(items, bad)

    def _reason(self, exc: ValidationError) -> str:
        return f"not a {self.model.__name__}: {exc.errors(include_url=False)[:3]}"
