"""Metrics kept in Redis, so that every web process, job worker and machine adds to the same numbers,
and exposed in Prometheus format by any web process (prometheus-client renders them).

Counters are Redis hashes (one field per label set); histograms add a field per label set and bucket,
plus a sum. Each write is mirrored into a hash of the day (in TIMEZONE, kept HISTORY_TTL) so that
/stats can say what happened *today*, and the console's overview each of the last 30 days. A failed
metrics write never fails the request that made it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from redis.client import Pipeline

from bot.store import keys
from bot.store.days import day_of
from bot.store.pushes import OnFirst

log = logging.getLogger(__name__)

#: seconds; fits both "answer within WeChat's 5 s" and long generations
BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 4.5, 7.5, 10.0, 15.0, 30.0, 60.0)
#: how many undelivered-answer records are kept for tracing
UNDELIVERED_KEEP = 1000

#: name → help; Prometheus names are `wxbot_<name>_total`
COUNTERS = {
    "messages": "Pushes received, by message kind",
    "duplicates": "Repeated deliveries of a push (WeChat's retries), answered from Redis",
    "pages_delivered": "Answer pages that reached their user, by delivery path",
    "customer_service_failures": "Customer-service sends WeChat refused or that failed, by errcode",
    "undelivered": "Answers that could not be delivered when they were ready, by reason",
    "job_failures": "Generation jobs that failed, by reason",
    "token_refreshes": "access_token fetches",
    "tool_calls": "Tool calls the models made (bot/tools/), by function (the tool) and outcome",
    "answers_by_expert": "Answers by task expert (EXPERTS, bot/experts/): the task (none: no expert), "
    "the model asked, and why (rule, classifier, user, unclear, fallback, vision)",
}
#: name → help; Prometheus names are `wxbot_<name>` (with _bucket, _sum, _count)
HISTOGRAMS = {
    "llm_latency_seconds": "Time from the request to the LLM to its whole answer or its failure, by outcome",
    "first_page_seconds": "Time from the question's arrival to its first page being ready (a reasoning "
    "model's thinking not counted: see reasoning_seconds)",
    "reasoning_seconds": "Time a reasoning model thought before the first token of its answer",
}


#: `inc` as one command. KEYS: the all-time hash, today's. ARGV: the field, the increment, HISTORY_TTL.
#: Sent as EVAL (a registered script in a pipeline costs a SCRIPT EXISTS round trip first).
INC_IN = """
redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""

#: `inc` as a function another store's script runs (`on_inc`). k: the all-time hash, today's. a: the
#: field, the increment, HISTORY_TTL.
INC_FUNCTION = """
local function inc(k, a)
    redis.call('HINCRBY', k[1], a[1], a[2])
    redis.call('HINCRBY', k[2], a[1], a[2])
    redis.call('EXPIRE', k[2], a[3])
end
"""


def _label_key(labels: dict[str, str]) -> str:
    return json.dumps(labels, sort_keys=True, ensure_ascii=False)


def _bucket_of(seconds: float) -> str:
    return next((str(bound) for bound in BUCKETS if seconds <= bound), "+Inf")


class Metrics:
    def __init__(self, client: redis.Redis, zone: ZoneInfo, clock: Callable[[], float] = time.time) -> None:
        self.redis = client
        self.zone = zone
        self.clock = clock

    def _keys(self, name: str) -> tuple[str, str]:
        """The all-time hash and today's mirror of one metric."""
        return keys.metric(name), keys.day_metric(day_of(self.zone, self.clock()), name)

    def inc(self, name: str, by: int = 1, **labels: str) -> None:
        self._write(name, [(_label_key(labels), by)])

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        label = _label_key(labels)
        self._write(name, [(f"{label}|{_bucket_of(seconds)}", 1)], (f"{label}|sum", seconds))

    def observe_in(self, pipe: Pipeline, name: str, seconds: float, **labels: str) -> None:
        """`observe`, queued in the caller's pipeline (the end of an answer's round trip)."""
        label = _label_key(labels)
        self._queue(pipe, name, [(f"{label}|{_bucket_of(seconds)}", 1)], (f"{label}|sum", seconds))

    def inc_in(self, pipe: Pipeline, name: str, by: int = 1, **labels: str) -> None:
        """`inc`, queued in the caller's pipeline as one command (INC_IN): it rides on the caller's round
        trip (the webhook's per-push writes), and a failure is the caller's to handle."""
        all_time, today = self._keys(name)
        pipe.eval(INC_IN, 2, all_time, today, _label_key(labels), by, keys.HISTORY_TTL)

    def on_inc(self, name: str, by: int = 1, **labels: str) -> OnFirst:
        """`inc`, as a part of another store's script (the claim of a page: counted only when the
        claim succeeds, in the claim's own round trip)."""
        all_time, today = self._keys(name)
        return OnFirst(INC_FUNCTION, "inc", [all_time, today], [_label_key(labels), by, keys.HISTORY_TTL])

    def _write(
        self, name: str, counts: list[tuple[str, int]], total: tuple[str, float] | None = None
    ) -> None:
        try:
            pipe = self.redis.pipeline(transaction=False)
            self._queue(pipe, name, counts, total)
            pipe.execute()
        except redis.exceptions.RedisError as exc:
            log.warning("metric %s not recorded: %s", name, exc)

    def _queue(
        self, pipe: Pipeline, name: str, counts: list[tuple[str, int]], total: tuple[str, float] | None
    ) -> None:
        for key in self._keys(name):
            for field, by in counts:
                pipe.hincrby(key, field, by)
            if total is not None:
                pipe.hincrbyfloat(key, *total)
        pipe.expire(self._keys(name)[1], keys.HISTORY_TTL)

    def undelivered(self, answer_id: str, openid: str, reason: str) -> None:
        """Record why an answer did not reach its user when it was ready (for tracing)."""
        record = json.dumps({"answer": answer_id, "openid": openid, "reason": reason, "at": time.time()})
        log.warning("answer %s for %s not delivered: %s", answer_id, openid, reason)
        self.inc("undelivered", reason=reason.split(":")[0])
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.lpush(keys.UNDELIVERED, record)
            pipe.ltrim(keys.UNDELIVERED, 0, UNDELIVERED_KEEP - 1)
            pipe.execute()
        except redis.exceptions.RedisError as exc:
            log.warning("undelivered record lost: %s", exc)

    def undelivered_records(self, limit: int = 50) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.redis.lrange(keys.UNDELIVERED, 0, limit - 1)]

    def counter(self, name: str, *, today: bool = False) -> dict[str, int]:
        """Values of a counter by label JSON, all-time or today's."""
        key = self._keys(name)[1 if today else 0]
        return {str(label): int(value) for label, value in self.redis.hgetall(key).items()}

    def average(self, name: str, *, today: bool = False, **labels: str) -> float | None:
        """Mean of a histogram's observations with exactly these labels, None before the first one."""
        key, wanted = self._keys(name)[1 if today else 0], _label_key(labels)
        total, count = 0.0, 0
        for field, value in self.redis.hgetall(key).items():
            label, _, bucket = str(field).rpartition("|")
            if label != wanted:
                continue
            if bucket == "sum":
                total += float(value)
            else:
                count += int(value)
        return total / count if count else None

    def days(self, name: str, days: list[str]) -> list[dict[str, float]]:
        """The day mirror of a metric for each of `days` (YYYYMMDD): field (label JSON, and for a
        histogram "|bucket" or "|sum") → value; empty for a day without writes or older than HISTORY_TTL."""
        pipe = self.redis.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(keys.day_metric(day, name))
        return [{str(field): float(value) for field, value in found.items()} for found in pipe.execute()]

    def queue_depth(self) -> int:
        """Generation jobs waiting in Dramatiq's queue."""
        return int(self.redis.llen(keys.JOB_QUEUE))

    def registry(self) -> CollectorRegistry:
        found = CollectorRegistry(auto_describe=False)
        found.register(RedisCollector(self))
        return found


class RedisCollector(Collector):
    """Reads the shared metrics from Redis at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        for name, doc in COUNTERS.items():
            yield self._counter(name, doc)
        for name, doc in HISTOGRAMS.items():
            yield self._histogram(name, doc)
        queue = GaugeMetricFamily("wxbot_queue_depth", "Generation jobs waiting in the queue")
        queue.add_metric([], float(self.metrics.queue_depth()))
        yield queue

    def _counter(self, name: str, doc: str) -> CounterMetricFamily:
        values = self.metrics.counter(name)
        label_names = sorted({k for raw in values for k in json.loads(raw)})
        family = CounterMetricFamily(f"wxbot_{name}", doc, labels=label_names)
        for raw, value in values.items():
            labels = json.loads(raw)
            family.add_metric([labels.get(k, "") for k in label_names], float(value))
        return family

    def _histogram(self, name: str, doc: str) -> HistogramMetricFamily:
        series = _histogram_series(self.metrics.redis.hgetall(keys.metric(name)))
        label_names = sorted({k for raw in series for k in json.loads(raw)})
        family = HistogramMetricFamily(f"wxbot_{name}", doc, labels=label_names)
        for raw, (counts, total) in series.items():
            labels = json.loads(raw)
            cumulative, buckets = 0.0, []
            for bucket, count in counts.items():
                cumulative += count
                buckets.append((bucket, cumulative))
            family.add_metric([labels.get(k, "") for k in label_names], buckets, total)
        return family


def _histogram_series(fields: dict[Any, Any]) -> dict[str, tuple[dict[str, float], float]]:
    """label JSON → (count per bucket, in bucket order; sum) from a histogram's hash."""
    series: dict[str, tuple[dict[str, float], float]] = {}
    for field, value in fields.items():
        label, _, bucket = str(field).rpartition("|")
        counts, total = series.get(label) or ({b: 0.0 for b in [*map(str, BUCKETS), "+Inf"]}, 0.0)
        if bucket == "sum":
            total += float(value)
        elif bucket in counts:
            counts[bucket] += float(value)
        series[label] = (counts, total)
    return series
