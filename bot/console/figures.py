"""The overview's figures, gathered from the runtime's stores into plain data that the page and its
charts draw (and tests read without Flask).

Where each comes from, and how long it is kept (bot/store/keys.py):
- messages and distinct users per hour of today and per day of the last 30 (DailyStats: messages per
  hour and users per day HISTORY_TTL, 40 days; users per hour HOURLY_TTL, 48 hours), in TIMEZONE;
- pages by delivery path, customer-service failures by errcode, job failures by reason, undelivered
  answers by reason, first-page and LLM latency: the day mirrors of the metrics (Metrics, HISTORY_TTL);
  the latency quantiles are read from the histograms' buckets, like Prometheus' histogram_quantile;
- the machinery as it is now: the job queue, the job workers' heartbeats, Redis' memory and
  persistence, the access token's remaining life (never the token), the LLM backend and its models
  from the settings (no request to the LLM is made).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import redis

from bot.llm import default_model
from bot.runtime import Runtime
from bot.store.metrics import BUCKETS
from bot.store.server import RedisState

#: the per-day charts cover this many days, today included
HISTORY_DAYS = 30
#: the delivery paths in the order their segments are stacked (others follow, by name)
PATHS = ("attempt_1", "attempt_2", "attempt_3", "next_message", "continue", "customer_service")
#: the prefix of a failed customer-service send's segment: "cs_failed:<errcode>"
CS_FAILED = "cs_failed:"


@dataclass(frozen=True)
class Stack:
    """Series of numbers over the same labels (days): a chart's data."""

    labels: list[str]
    series: list[tuple[str, list[float | None]]]

    def renamed(self, names: dict[str, str]) -> list[tuple[str, list[float | None]]]:
        """The series with display names (a template's), a name without one kept as it is; for a
        "cs_failed:<errcode>" series, the name of "cs_failed" followed by the code."""
        return [(_display(name, names), values) for name, values in self.series]

    def alarms(self, names: dict[str, str]) -> list[str]:
        """The display names of the failed customer-service sends' series (drawn in red)."""
        return [_display(name, names) for name, _ in self.series if name.startswith(CS_FAILED)]

    def names(self, names: dict[str, str]) -> list[str]:
        """The display names of every series."""
        return [_display(name, names) for name, _ in self.series]

    def total(self, name: str) -> float:
        return sum(v or 0 for series, values in self.series if series == name for v in values)


@dataclass(frozen=True)
class Activity:
    """Messages and distinct users per hour of today (None: an hour still to come) and per day."""

    hours: list[str]
    hour_messages: list[float | None]
    hour_users: list[float | None]
    days: list[str]
    day_messages: list[float | None]
    day_users: list[float | None]
    #: today's exact figures (DailyStats' set and counter)
    messages_today: int
    users_today: int


@dataclass(frozen=True)
class Latency:
    """p50 and p95 per day, in seconds (None: no observation that day)."""

    days: list[str]
    first_page_p50: list[float | None]
    first_page_p95: list[float | None]
    llm_p50: list[float | None]
    llm_p95: list[float | None]


@dataclass(frozen=True)
class Failures:
    """Today's failures by reason, and undelivered answers per day."""

    job_failures_today: list[tuple[str, float]]
    undelivered_today: list[tuple[str, float]]
    cs_failures_today: list[tuple[str, float]]
    job_failures_by_day: Stack
    undelivered_by_day: Stack


@dataclass(frozen=True)
class Machinery:
    queue_depth: int
    #: (short worker id, seconds since its last heartbeat), freshest first
    workers: list[tuple[str, float]]
    #: a worker silent for longer is taken for dead (WORKER_HEARTBEAT_TIMEOUT)
    heartbeat_timeout: float
    redis: RedisState | None
    #: seconds the cached access token still has; None: no token cached
    token_expires_in: float | None
    cs_unauthorized: bool
    reply_mode: str
    backend: str
    default_model: str
    #: the models followers may pick with /model now (the default first)
    models: list[str] = field(default_factory=list)

    @property
    def live_workers(self) -> int:
        return sum(1 for _, age in self.workers if age <= self.heartbeat_timeout)


@dataclass(frozen=True)
class Overview:
    day: str
    generated_at: float
    activity: Activity
    deliveries: Stack
    deliveries_today: list[tuple[str, float]]
    latency: Latency
    failures: Failures
    machinery: Machinery
    #: today's tool calls by "tool/outcome", and answers by "expert/model" (EXPERTS), largest first
    tools_today: list[tuple[str, float]] = field(default_factory=list)
    experts_today: list[tuple[str, float]] = field(default_factory=list)


def gather(runtime: Runtime, now: float | None = None) -> Overview:
    """Every figure of the overview at `now` (default: the stats' clock): about 17 small Redis round
    trips (10–15 ms with 35 days of history on a loaded machine); nothing outside Redis is asked."""
    now = runtime.stats.clock() if now is None else now
    days = last_days(runtime, now)
    day_keys = [day for day, _ in days]
    labels = [label for _, label in days]
    deliveries = _deliveries(runtime, day_keys, labels)
    return Overview(
        day=day_keys[-1],
        generated_at=now,
        activity=_activity(runtime, now, day_keys, labels),
        deliveries=deliveries,
        deliveries_today=_today({n: v for n, v in deliveries.series if not n.startswith(CS_FAILED)}),
        latency=_latency(runtime, day_keys, labels),
        failures=_failures(runtime, day_keys, labels),
        machinery=machinery(runtime),
        tools_today=_today(
            _by_labels(runtime.metrics.days("tool_calls", day_keys[-1:]), "function", "outcome")
        ),
        experts_today=_today(
            _by_labels(runtime.metrics.days("answers_by_expert", day_keys[-1:]), "expert", "model")
        ),
    )


def last_days(runtime: Runtime, now: float) -> list[tuple[str, str]]:
    """The last HISTORY_DAYS days in TIMEZONE, oldest first: (YYYYMMDD, "MM-DD"). Calendar days, not
    periods of 86 400 s, so that a change of daylight-saving time skips no day."""
    today = datetime.fromtimestamp(now, runtime.settings.zone).date()
    found = [today - timedelta(days=back) for back in range(HISTORY_DAYS - 1, -1, -1)]
    return [(day.strftime("%Y%m%d"), day.strftime("%m-%d")) for day in found]


def _activity(runtime: Runtime, now: float, day_keys: list[str], labels: list[str]) -> Activity:
    hour_now = datetime.fromtimestamp(now, runtime.settings.zone).hour
    hours = runtime.stats.hours(day_keys[-1])
    per_day = runtime.stats.days(day_keys)
    return Activity(
        hours=[f"{hour:02d}" for hour in range(24)],
        hour_messages=[float(m) if hour <= hour_now else None for hour, (m, _) in enumerate(hours)],
        hour_users=[float(u) if hour <= hour_now else None for hour, (_, u) in enumerate(hours)],
        days=labels,
        day_messages=[float(m) for m, _ in per_day],
        day_users=[float(u) for _, u in per_day],
        messages_today=runtime.stats.messages_today(),
        users_today=runtime.stats.users_today(),
    )


def _deliveries(runtime: Runtime, day_keys: list[str], labels: list[str]) -> Stack:
    """Pages by delivery path per day, then failed customer-service sends by errcode."""
    paths = _by_labels(runtime.metrics.days("pages_delivered", day_keys), "path")
    failed = _by_labels(runtime.metrics.days("customer_service_failures", day_keys), "errcode")
    ordered = [p for p in PATHS if p in paths] + sorted(set(paths) - set(PATHS))
    series = [(p, paths[p]) for p in ordered] + [
        (f"{CS_FAILED}{code}", failed[code]) for code in sorted(failed)
    ]
    return Stack(labels, series)


def _failures(runtime: Runtime, day_keys: list[str], labels: list[str]) -> Failures:
    jobs = _by_labels(runtime.metrics.days("job_failures", day_keys), "reason")
    undelivered = _by_labels(runtime.metrics.days("undelivered", day_keys), "reason")
    cs = _by_labels(runtime.metrics.days("customer_service_failures", day_keys[-1:]), "errcode")
    return Failures(
        job_failures_today=_today(jobs),
        undelivered_today=_today(undelivered),
        cs_failures_today=_today(cs),
        job_failures_by_day=Stack(labels, sorted(jobs.items())),
        undelivered_by_day=Stack(labels, sorted(undelivered.items())),
    )


def _latency(runtime: Runtime, day_keys: list[str], labels: list[str]) -> Latency:
    first = [_buckets(found) for found in runtime.metrics.days("first_page_seconds", day_keys)]
    llm = [_buckets(found) for found in runtime.metrics.days("llm_latency_seconds", day_keys)]
    return Latency(
        days=labels,
        first_page_p50=[quantile(b, 0.5) for b in first],
        first_page_p95=[quantile(b, 0.95) for b in first],
        llm_p50=[quantile(b, 0.5) for b in llm],
        llm_p95=[quantile(b, 0.95) for b in llm],
    )


def machinery(runtime: Runtime) -> Machinery:
    """The machinery as it is now. Redis' INFO is left out (None) if the server refuses it."""
    settings = runtime.settings
    try:
        server: RedisState | None = runtime.server.state()
    except redis.exceptions.RedisError:
        server = None
    return Machinery(
        queue_depth=runtime.metrics.queue_depth(),
        workers=runtime.workers.heartbeats(),
        heartbeat_timeout=settings.worker_heartbeat_timeout,
        redis=server,
        token_expires_in=runtime.wechat_state.token_expires_in(),
        cs_unauthorized=runtime.wechat_state.cs_unauthorized(),
        reply_mode=settings.wechat_reply_mode,
        backend=settings.llm_backend,
        default_model=default_model(settings),
        models=list(runtime.models.allowed),
    )


# --- reading the metrics' day mirrors -------------------------------------------------------------


def _by_labels(days: list[dict[str, float]], *labels: str) -> dict[str, list[float | None]]:
    """A counter's days → one list of daily values per value of `labels` (joined with "/" when there
    are several, e.g. a tool and its outcome; 0 on days without it)."""
    found: dict[str, list[float | None]] = {}
    for index, fields in enumerate(days):
        for raw, value in fields.items():
            named = json.loads(raw)
            name = "/".join(str(named.get(label, "")) or "-" for label in labels)
            values = found.setdefault(name, [0.0] * len(days))
            values[index] = (values[index] or 0) + value
    return found


def _today(series: dict[str, list[float | None]]) -> list[tuple[str, float]]:
    """The last day's value of each series that has one, largest first."""
    found = [(name, values[-1] or 0.0) for name, values in series.items() if values and values[-1]]
    return sorted(found, key=lambda item: (-item[1], item[0]))


def _buckets(fields: dict[str, float]) -> list[tuple[float, float]]:
    """A histogram's day mirror → (upper bound, count) per bucket in bucket order, summed over every
    label set (math.inf for "+Inf"); its sums are left out."""
    counts = {bound: 0.0 for bound in [*BUCKETS, float("inf")]}
    for raw, value in fields.items():
        bucket = raw.rpartition("|")[2]
        if bucket != "sum":
            counts[float(bucket)] = counts.get(float(bucket), 0.0) + value
    return sorted(counts.items())


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The q-quantile of observations counted in buckets ((upper bound, count), ascending; counts per
    bucket, not cumulative), as Prometheus' histogram_quantile estimates it: linear within the bucket
    where the rank falls (the first bucket from 0); a rank in the +Inf bucket gives the largest finite
    bound. None without observations."""
    total = sum(count for _, count in buckets)
    if total <= 0:
        return None
    rank, below, lower = q * total, 0.0, 0.0
    for upper, count in buckets:
        if count and below + count >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - below) / count
        below += count
        lower = upper if upper != float("inf") else lower
    return lower


def _display(name: str, names: dict[str, str]) -> str:
    if name.startswith(CS_FAILED):
        return f"{names.get('cs_failed', 'cs_failed')} {name.removeprefix(CS_FAILED)}"
    return names.get(name, name)


def with_names(items: list[tuple[str, float]], names: dict[str, str]) -> list[tuple[str, float]]:
    """(name, value) pairs with display names (a template's)."""
    return [(_display(name, names), value) for name, value in items]
