"""The local judge's start-up probe: a server that lists its model but cannot complete must stop
the start with one line that says what to do (issue 13: a native llama.cpp build died with
SIGSEGV on its first completion, and the demo ran on with a judge that never judged)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.stack.broker import LaunchError
from pipeline.stack.local_judge import probe
from pipeline.synth.demo import judge_failed, judge_line
from tests.helpers import test_settings


@contextmanager
def server(answer: bytes | None) -> Iterator[str]:
    """Answers every POST with `answer` as JSON, or drops the connection (a dying server) when None."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if answer is None:
                self.connection.close()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


def completion(text: str) -> bytes:
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}).encode()


def test_a_judge_that_completes_passes_the_probe():
    with server(completion("OK")) as url:
        probe(url, lambda: None, timeout_s=5)


def test_a_judge_that_dies_on_its_first_completion_names_the_signal_and_the_fix():
    with server(None) as url, pytest.raises(LaunchError) as caught:
        probe(url, lambda: -11, timeout_s=5)
    message = str(caught.value)
    assert "died on its first completion (signal SIGSEGV)" in message
    assert "make setup" in message and "OODWATCH_JUDGE_BASE_URL" in message
    assert "\n" not in message


def test_a_judge_that_hangs_up_but_lives_is_refused_too():
    with server(None) as url, pytest.raises(LaunchError, match="did not answer a test completion"):
        probe(url, lambda: None, timeout_s=5)


def test_an_empty_answer_is_not_a_working_judge():
    with server(json.dumps({"choices": []}).encode()) as url, pytest.raises(LaunchError, match="no choices"):
        probe(url, lambda: None, timeout_s=5)


def test_the_demo_fails_loudly_when_a_configured_judge_never_judged(tmp_path):
    settings = test_settings(tmp_path, local_judge=True)
    never = {"judged": 0, "judge_error": 4, "judge_skipped": 0, "needs_human_review": 0, "cleared": 0}
    assert judge_failed(settings, never)
    assert "FAILED, 0 judged and 4 judge errors" in judge_line(settings, never)
    assert not judge_failed(settings, {**never, "judged": 1})
    assert not judge_failed(test_settings(tmp_path), never)  # no judge configured: nothing to fail
