from pipeline.agents.log_join import LogJoin
from schemas.events import LLMEvent, Message
from schemas.otel_mapping import Content


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def bare(span_id, operation="chat"):
    return LLMEvent(event_id=span_id, trace_id="t", span_id=span_id, session_id="s", operation=operation)


def content(text):
    return Content(system=["sys"], inputs=[Message(role="user", content=text)])


def make():
    clock = Clock()
    return LogJoin(span_wait_s=2, log_wait_s=10, clock=clock), clock


def test_logs_first_then_span_joins_and_acks_both_records():
    join, _ = make()
    out = join.add_logs({"a": content("hello")}, token="logs-record")
    assert out.events == [] and out.acks == []  # held until the span comes
    out = join.add_events([bare("a")], token="span-record")
    [event] = out.events
    assert event.input_messages[0].content == "hello" and event.system_instructions == "sys"
    assert sorted(out.acks) == ["logs-record", "span-record"]
    assert join.pending == 0 and join.counters.joined == 1


def test_span_first_waits_then_logs_complete_it():
    join, _ = make()
    out = join.add_events([bare("a"), bare("b", operation="execute_tool")], token="spans")
    assert [e.span_id for e in out.events] == ["b"]  # tool span needs no log content
    assert out.acks == []  # record still holds "a"
    out = join.add_logs({"a": content("late")}, token="logs")
    assert [e.input_messages[0].content for e in out.events] == ["late"]
    assert sorted(out.acks) == ["logs", "spans"]


def test_span_with_content_never_waits():
    join, _ = make()
    event = bare("a").model_copy(update={"input_messages": (Message(role="user", content="on span"),)})
    out = join.add_events([event], token="r")
    assert out.events == [event] and out.acks == ["r"]


def test_expiry_releases_spans_without_content_and_drops_orphan_logs():
    join, clock = make()
    join.add_events([bare("a")], token="spans")
    join.add_logs({"zz": content("no span")}, token="logs")
    clock.now = 2.5
    out = join.expire()
    assert [e.span_id for e in out.events] == ["a"] and out.acks == ["spans"]
    clock.now = 10.5
    out = join.expire()
    assert out.events == [] and out.acks == ["logs"]
    assert (join.counters.spans_without_content, join.counters.orphan_logs, join.pending) == (1, 1, 0)


def test_several_log_records_for_one_span_merge_and_all_get_acked():
    join, _ = make()
    join.add_logs({"a": Content(inputs=[Message(role="user", content="q")])}, token="l1")
    join.add_logs({"a": Content(outputs=[Message(role="assistant", content="r")])}, token="l2")
    out = join.add_events([bare("a")], token="s")
    [event] = out.events
    assert (event.input_messages[0].content, event.output_messages[0].content) == ("q", "r")
    assert sorted(out.acks) == ["l1", "l2", "s"]


def test_replayed_waiting_span_is_one_wait_and_frees_the_first_record():
    join, _ = make()
    join.add_events([bare("a")], token="first")
    out = join.add_events([bare("a")], token="replay")
    assert out.acks == ["first"] and join.pending == 1
    out = join.drain()
    assert [e.span_id for e in out.events] == ["a"] and out.acks == ["replay"]


def test_pending_is_bounded_oldest_first():
    clock = Clock()
    join = LogJoin(span_wait_s=2, log_wait_s=10, max_pending=2, clock=clock)
    join.add_events([bare("a")], token="r1")
    join.add_events([bare("b")], token="r2")
    out = join.add_events([bare("c")], token="r3")
    assert [e.span_id for e in out.events] == ["a"] and out.acks == ["r1"]
