"""`schemas.trusted.construct` builds the same model `model_construct` does."""

import pytest
from pydantic import BaseModel, Field, ValidationError

from schemas.evidence import Decision, ScreeningRow
from schemas.trusted import construct

ROW = dict(
    event_id="e", session_id="s", trace_id="t", service="svc", model=None, operation="chat", scores=(0.1, 0.9),
    decision=Decision.PASS, received_ns=1, normalized_ns=2, screened_ns=3, reasons=("r",),
)  # fmt: skip


def test_construct_equals_model_construct_defaults_and_fields_set_included():
    fast, slow = construct(ScreeningRow, **ROW), ScreeningRow.model_construct(**ROW)
    assert fast == slow and fast.model_fields_set == slow.model_fields_set == set(ROW)
    assert fast.model_dump() == slow.model_dump() and fast.excerpt == "" and fast.tool_scopes == ()
    assert ScreeningRow.model_validate(fast.model_dump()) == fast
    with pytest.raises(ValidationError, match="frozen"):
        fast.excerpt = "x"  # type: ignore[misc]


def test_models_with_default_factories_are_refused():
    class Mutable(BaseModel):
        items: list[str] = Field(default_factory=list)

    with pytest.raises(TypeError, match="model_construct"):
        construct(Mutable)
