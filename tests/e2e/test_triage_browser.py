"""The web desk in headless Chromium (Debian's, driven by Playwright) against the real store
process: sign in, list, open, claim, resolve by keyboard; and a bundle whose prompt, tool
description and judge rationale carry script and HTML payloads, none of which may run."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeline.stack.supervisor import child_env, http_ok
from pipeline.store.clickhouse import Store
from schemas.events import Message, ToolDefinition
from schemas.judge import JudgeStatus, JudgeVerdict, Tier3Result
from tests.helpers import free_port, test_settings
from tests.integration.test_store import bundle_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REVIEWER = "reviewer-token-browser-0123456789"
PAYLOADS = {
    "prompt": '<script>window.__xss="prompt"</script><img src=x onerror="window.__xss=\'img\'">',
    "tool": "<svg onload=\"window.__xss='svg'\"></svg><a href=\"javascript:window.__xss='link'\">x</a>",
    "rationale": '</blockquote><script>window.__xss="rationale"</script><iframe src="javascript:alert(1)"></iframe>',
    "tool_name": '"><img src=x onerror=alert(1)>',
}
DRILL_ROW = {
    "run_id": "drill-browser-1",
    "case_id": "rot13-1",
    "family": "adversarial_shift",
    "generator": "rot13",
    "seed": 1,
    "control": False,
    "flagged": True,
    "expected_tier": "tier1",
    "caught_tier": "tier1",
    "evidence_complete": True,
    "detect_s": 0.4,
    "evidence_s": 0.7,
    "injected_at": time.time_ns(),
    "score": 0.9,
    "events": 1,
    "screened": 1,
}
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


def hostile_bundle():
    bundle = bundle_for(7, 0.99)
    event = bundle.events[0].model_copy(
        update={
            "input_messages": (Message(role="user", content=PAYLOADS["prompt"]),),
            "tool_definitions": (ToolDefinition(name=PAYLOADS["tool_name"], description=PAYLOADS["tool"]),),
        }
    )
    verdict = JudgeVerdict(
        violation=True, categories=["prompt_injection"], severity="high", confidence=0.9,
        rationale=PAYLOADS["rationale"], evidence=[PAYLOADS["prompt"]],
    )  # fmt: skip
    tier3 = Tier3Result(status=JudgeStatus.JUDGED, verdict=verdict, model="m", attempts=1)
    return bundle.model_copy(update={"events": (event,), "tier3": tier3, "judge_status": JudgeStatus.JUDGED})


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make setup` (installs Debian's chromium)")
    data = tmp_path_factory.mktemp("desk")
    tokens = data / "tokens"
    tokens.write_text(f"ana reviewer {REVIEWER}\n")
    settings = test_settings(data, api_tokens_file=tokens, kafka_bootstrap=f"127.0.0.1:{free_port()}")
    plain, hostile = bundle_for(1, 0.6), hostile_bundle()
    store = Store.open(settings.store_dsn)
    store.insert_bundles([plain, hostile], time.time_ns())
    store.insert_drill_results([DRILL_ROW])
    store.close()
    log = open(data / "store.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "store"], env=child_env(settings), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while not http_ok(f"{settings.api_url}/healthz"):
            assert process.poll() is None and time.monotonic() < deadline, (data / "store.log").read_text()[-2000:]
            time.sleep(0.2)
        yield {"url": settings.api_url, "plain": plain.bundle_id, "hostile": hostile.bundle_id}
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


@pytest.fixture
def page(desk):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context()
        tab = context.new_page()
        dialogs: list[str] = []
        tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        tab.dialogs = dialogs  # type: ignore[attr-defined]
        tab.goto(f"{desk['url']}/ui")
        tab.fill("#token", REVIEWER)
        tab.click("button[type=submit]")
        tab.wait_for_url(f"{desk['url']}/ui")
        yield tab
        browser.close()


def test_list_open_claim_and_resolve_from_the_keyboard(desk, page):
    from playwright.sync_api import expect

    page.wait_for_selector("#queue tbody tr")
    assert page.inner_text("#who") == "ana (reviewer)"
    rows = page.locator("#queue tbody tr")
    assert rows.count() == 2
    page.goto(f"{desk['url']}/ui/bundle/{desk['plain']}")
    page.wait_for_selector("#summary h2")
    assert desk["plain"] in page.inner_text("#summary")
    page.keyboard.press("c")
    expect(page.locator("#message")).to_have_text("claimed")
    expect(page.locator("#summary")).to_contain_text("claimed by ana")
    page.keyboard.press("2")  # false_positive
    page.keyboard.press("n")
    page.keyboard.type("benign: a billing question")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#message")).to_have_text("resolved")
    expect(page.locator("#summary")).to_contain_text("resolved as false_positive by ana")
    expect(page.locator("#history")).to_contain_text("benign: a billing question")
    state = httpx.get(
        f"{desk['url']}/api/escalations/{desk['plain']}", headers={"Authorization": f"Bearer {REVIEWER}"}
    ).json()
    assert (state["queue_state"], state["label"], state["claimed_by"]) == ("resolved", "false_positive", "ana")
    page.goto(f"{desk['url']}/ui")
    page.wait_for_selector("#queue tbody tr")
    assert page.locator("#queue tbody tr").count() == 1  # the resolved one left the open queue


def test_script_and_html_payloads_are_shown_as_text_and_never_run(desk, page):
    page.goto(f"{desk['url']}/ui/bundle/{desk['hostile']}")
    page.wait_for_selector("#judge blockquote")
    page.wait_for_timeout(500)  # give any injected handler time to fire
    assert page.evaluate("window.__xss") is None
    assert page.dialogs == []  # type: ignore[attr-defined]
    assert PAYLOADS["prompt"] in page.inner_text("#conversation")  # shown literally, as text
    assert PAYLOADS["tool"] in page.inner_text("#tools") and PAYLOADS["tool_name"] in page.inner_text("#tools")
    assert PAYLOADS["rationale"] in page.inner_text("#judge")
    for tag in ("script", "img", "svg", "iframe"):  # no element was created from the payloads
        assert page.locator(f"main {tag}, section {tag}").count() == 0
    assert page.locator("a[href^='javascript']").count() == 0


def test_the_drill_view_lists_runs_by_family(desk, page):
    from playwright.sync_api import expect

    page.goto(f"{desk['url']}/ui/drills")
    expect(page.locator("#runs tbody")).to_contain_text("drill-browser-1")
    expect(page.locator("#runs tbody")).to_contain_text("adversarial_shift")
