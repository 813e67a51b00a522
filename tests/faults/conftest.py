"""Faults tier: each test starts what it breaks (a stack, a broker, a receiver) on 127.0.0.1."""

from __future__ import annotations

import pytest

from tests.faults.ledger import LEDGER_FILE


@pytest.fixture(scope="session", autouse=True)
def fresh_ledger() -> None:
    LEDGER_FILE.parent.mkdir(parents=True, exist_ok=True)
    LEDGER_FILE.write_text("")
