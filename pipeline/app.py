"""The Faust app factory. Nothing is created on import; `create_app` builds it from settings."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

import faust

from detectors.tool_manifest import ManifestCheck, SignedManifest, declared_tools, load_verified
from pipeline.agents.common import TopicHandles
from pipeline.agents.investigate import InvestigateStage, Investigator
from pipeline.agents.judge import JudgeStage, Tier3
from pipeline.agents.log_join import LogJoin
from pipeline.agents.normalize import Normalizer
from pipeline.agents.screen import Screener, ScreenStage
from pipeline.agents.stage import StageLoop
from pipeline.agents.tools import SightingFilter, ToolPins, ToolsStage
from pipeline.agents.watchdog import StallWatchdog
from pipeline.faust_transport import App
from pipeline.kafka_security import aiokafka_options, faust_credentials
from pipeline.policy import RoutingPolicy
from pipeline.settings import Settings

log = logging.getLogger(__name__)

COUNTER_LOG_INTERVAL_S = 30.0
JOIN_EXPIRY_INTERVAL_S = 0.25
STALL_CHECK_INTERVAL_S = 5.0
LOCAL_JUDGE_BUDGET = {"max_rate_per_s": 0.4, "burst": 4.0, "max_concurrency": 1}


def build_screener(settings: Settings) -> Screener:
    """Tier 1 for this worker: the classifier (loaded once) and the cheap rules."""
    from detectors.rules import default_rules
    from detectors.tier1_classifier import Tier1Classifier
    from detectors.tool_lint import ToolDescriptionLint
    from detectors.tool_policy import ToolCallPolicy

    signed = verified_manifests(settings)
    scopes = {tool.name: tool.scope for s in signed for tool in s.manifest.tools}
    detectors: list[Any] = [
        Tier1Classifier(settings.models_path),
        *default_rules(),
        ToolDescriptionLint(),
        ToolCallPolicy(scopes),
    ]
    if settings.tool_manifests_dir is not None:
        manifests = [s.manifest for s in signed]
        detectors.append(ManifestCheck(manifests, require_signatures=settings.require_tool_signatures))
    return Screener(
        detectors,
        RoutingPolicy.load(settings.policy_file),
        reference_sample_rate=settings.reference_sample_rate,
        text_mode=settings.screening_text,
        text_chars=settings.screening_text_chars,
        profile_outputs=settings.drift.enabled,
        output_sample_rate=settings.drift.output_sample_rate,
        output_sample_chars=settings.drift.output_sample_chars,
    )


def verified_manifests(settings: Settings) -> list[SignedManifest]:
    """The signed tool manifests this worker trusts; a worker refuses to start on a bad one."""
    if settings.tool_manifests_dir is None:
        return []
    return load_verified(settings.tool_manifests_dir, settings.tool_keys_dir or settings.tool_manifests_dir)


def build_investigator(settings: Settings, policy: RoutingPolicy) -> Investigator:
    """Tier 2 for this worker, when its model is built; bundles say when it is not."""
    from detectors.ood import TIER2_META, EmbeddingAnomalyDetector

    if not (settings.models_path / TIER2_META).exists():
        log.warning("tier-2 model not in %s: bundles will carry tier-1 evidence only", settings.models_path)
        return Investigator(None, policy)
    return Investigator(EmbeddingAnomalyDetector(settings.models_path), policy)


def build_tier3(settings: Settings, policy: RoutingPolicy) -> Tier3 | None:
    """The judge with the policy's tier-3 budget (the settings may override it), if one is configured."""
    from detectors.judge import CircuitBreaker, JudgeConfig, LLMJudge

    base_url, model, response_format = settings.judge_endpoint()
    if not base_url:
        log.info("no judge configured (OODWATCH_JUDGE_BASE_URL): escalations go to the human queue unjudged")
        return None
    overrides = {
        "timeout_s": settings.judge_timeout_s,
        "max_concurrency": settings.judge_max_concurrency,
        "max_rate_per_s": settings.judge_max_rate_per_s,
    }
    budget = policy.budget("tier3")
    if settings.uses_local_judge:  # SmolLM2 on two threads: one call at a time, ~2 s each
        budget = budget.model_copy(update=LOCAL_JUDGE_BUDGET)
    budget = budget.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    config = JudgeConfig(
        base_url=base_url,
        model=model,
        api_key=settings.judge_key(),
        timeout_s=budget.timeout_s,
        max_tokens=settings.judge_max_tokens,
        response_format=response_format,  # type: ignore[arg-type]
    )
    breaker = CircuitBreaker(settings.judge_breaker_failures, settings.judge_breaker_cooldown_s)
    return Tier3(LLMJudge(config, breaker=breaker), policy, budget)


def keyed_table(app: faust.App, name: str, partitions: int) -> Any:
    """A table of JSON values whose changelog partition is hashed from the raw key bytes, as the
    topic feeding it is keyed, so a key's row and its records share a partition."""
    return app.Table(
        name,
        default=None,
        schema=faust.Schema(key_type=str, key_serializer="raw", value_serializer="json"),
        partitions=partitions,
        use_partitioner=True,
    )


def create_app(
    settings: Settings, *, screener: Screener | None = None, investigator: Investigator | None = None,
    tier3: Tier3 | None = None,
) -> faust.App:  # fmt: skip
    app = App(
        settings.app_id,
        fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
        broker=f"kafka://{settings.bootstrap}",
        store="memory://",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.faust_session_timeout_s,
        broker_heartbeat_interval=settings.faust_heartbeat_interval_s,
        web_enabled=False,
        value_serializer="raw",
        key_serializer="raw",
        producer_linger=settings.faust_producer_linger_s,
        producer_compression_type=settings.faust_producer_compression,
        # An envelope holds up to ~1 MB of events, or one event as large as the receiver admits.
        producer_max_request_size=settings.max_request_bytes + 4096,
        producer_max_batch_size=settings.worker_producer_max_batch_bytes,
        broker_credentials=faust_credentials(settings),
    )
    names = settings.topics

    def topic(name: str) -> Any:
        return app.topic(name, key_type=bytes, value_type=bytes, partitions=settings.topic_partitions)

    topics = TopicHandles(
        llm_events=topic(names.llm_events),
        screenings=topic(names.screenings),
        escalations=topic(names.escalations),
        evidence=topic(names.evidence),
        dead_letters=topic(names.dead_letters),
        judge_requests=topic(names.judge_requests),
        tool_sightings=topic(names.tool_sightings),
        tool_registry=topic(names.tool_registry),
    )
    roles = settings.roles
    hot_path = screener or build_screener(settings)
    escalation_path = investigator or (
        build_investigator(settings, hot_path.policy) if "investigate" in roles else None
    )
    judge = tier3 or (build_tier3(settings, hot_path.policy) if "judge" in roles else None)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tier1")
    tier2_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tier2")
    # Accumulated risk per session. The changelog partition is hashed from the key (raw
    # session-id bytes, the key llm-events envelopes are partitioned by), not taken from a
    # "current event", which a micro-batch does not have: a session's events and its row share
    # a partition.
    session_risk = keyed_table(app, "session-risk", settings.topic_partitions)
    join = LogJoin(span_wait_s=settings.log_join_span_wait_s, log_wait_s=settings.log_join_log_wait_s)
    otlp = app.topic(names.otlp_spans, names.otlp_logs, key_type=bytes, value_type=bytes)
    normalizer = Normalizer(
        topics, join, names.otlp_logs, batch_size=settings.normalize_batch_size, window_s=settings.normalize_window_s,
        deployment_attributes=settings.drift.deployment_attribute_names,
    )  # fmt: skip
    loops: list[StageLoop[Any]] = []

    def run_stage(stage: Any, source: Any, batch_size: int) -> None:
        loop = StageLoop(stage, topics.dead_letters, batch_size=batch_size, window_s=settings.screen_batch_window_s)
        loops.append(loop)

        async def agent(stream: Any) -> None:
            await loop.run(stream)

        app.agent(source, name=stage.name)(agent)

    if "normalize" in roles:

        @app.agent(otlp, name="normalize")
        async def normalize(stream: Any) -> None:
            await normalizer.run(stream)

        @app.timer(JOIN_EXPIRY_INTERVAL_S)  # type: ignore[untyped-decorator]
        async def expire_join() -> None:
            await normalizer.expire()

    if "screen" in roles:
        stage = ScreenStage(hot_path, topics, executor, sessions=session_risk, sightings=SightingFilter())
        run_stage(stage, topics.llm_events, settings.screen_batch_size)

    if "tools" in roles:
        # Pins per tool identity; the sightings topic is keyed by identity, like the table.
        tool_pins = keyed_table(app, "tool-pins", settings.topic_partitions)
        pins = ToolPins(hot_path.policy, declared_tools(verified_manifests(settings)))
        run_stage(ToolsStage(pins, tool_pins, topics), topics.tool_sightings, settings.screen_batch_size)

    # Bundles go to the judge agent whenever a judge is configured, whichever process runs it.
    judging = judge is not None or bool(settings.judge_endpoint()[0])
    if escalation_path is not None:
        investigate = InvestigateStage(
            escalation_path, topics, tier2_executor, budget=hot_path.policy.budget("tier2"),
            judge_policy=hot_path.policy if judging else None,
        )  # fmt: skip
        run_stage(investigate, topics.escalations, settings.investigate_batch_size)

    if judge is not None:
        run_stage(JudgeStage(judge, topics), topics.judge_requests, settings.investigate_batch_size)

    if settings.worker_stall_timeout_s > 0:
        sources = {
            "normalize": (names.otlp_spans, names.otlp_logs), "screen": (names.llm_events,),
            "investigate": (names.escalations,), "tools": (names.tool_sightings,),
        }  # fmt: skip
        watchdog = StallWatchdog(
            settings.bootstrap, settings.app_id, [t for role in roles for t in sources.get(role, ())],
            settings.worker_stall_timeout_s, aiokafka_options(settings),
        )  # fmt: skip

        watchdog.rebalancing(time.monotonic())  # until the first assignment

        app.stall_watchdog = watchdog  # run_worker starts its join guard with the worker

        @app.on_partitions_revoked.connect  # type: ignore[misc,arg-type]
        async def _rebalancing(sender: Any, *_: Any, **__: Any) -> None:
            watchdog.rebalancing(time.monotonic())

        @app.on_rebalance_complete.connect  # type: ignore[misc,arg-type]
        async def _joined(sender: Any, *_: Any, **__: Any) -> None:
            watchdog.joined()

        @app.timer(STALL_CHECK_INTERVAL_S)  # type: ignore[untyped-decorator]
        async def watch_for_stalls() -> None:
            await watchdog.check(app.consumer.assignment(), time.monotonic())

    @app.timer(COUNTER_LOG_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def report_counters() -> None:
        for stage_loop in loops:
            log.info("%s counters", stage_loop.stage.name, extra=asdict(stage_loop.counters))
        if "normalize" in roles:
            log.info(
                "normalize counters",
                extra={
                    **asdict(normalizer.counters),
                    "log_joins": join.counters.joined,
                    "spans_without_log_content": join.counters.spans_without_content,
                    "orphan_log_spans": join.counters.orphan_logs,
                    "join_pending": join.pending,
                },
            )

    return app
