"""Metrics kept in Redis, so that every web process, job worker and machine adds to the same numbers,
and exposed in Prometheus format by any web process (prometheus-client renders them).

Counters are Redis hashes (one field per label set); histograms add a field per bucket plus sum and
count. A failed metrics write never fails the request that made it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from bot.store import keys

log = logging.getLogger(__name__)

#: seconds; fits both "answer within WeChat's 5 s" and long generations
BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 4.5, 7.5, 10.0, 15.0, 30.0, 60.0)
#: how many undelivered-answer records are kept for tracing
UNDELIVERED_KEEP = 1000

COUNTERS = {
    "messages": "Pushes received, by message kind",
    "duplicates": "Repeated deliveries of a push (WeChat's retries), answered from Redis",
    "answers": "Answers (pages) delivered, by path",
    "undelivered": "Answers that could not be delivered when they were ready, by reason",
    "job_failures": "Generation jobs that failed, by reason",
    "token_refreshes": "access_token fetches",
}
HISTOGRAMS = {
    "llm_latency_seconds": "Time from the start of generation to the whole answer",
    "first_page_seconds": "Time from the question's arrival to its first page being ready",
}


def _label_key(labels: dict[str, str]) -> str:
    return json.dumps(labels, sort_keys=True, ensure_ascii=False)


class Metrics:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def inc(self, name: str, by: int = 1, **labels: str) -> None:
        try:
            self.redis.hincrby(keys.metric(name), _label_key(labels), by)
        except redis.exceptions.RedisError as exc:
            log.warning("metric %s not recorded: %s", name, exc)

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        label = _label_key(labels)
        bucket = next((str(b) for b in BUCKETS if seconds <= b), "+Inf")
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hincrby(keys.metric(name), f"{label}|{bucket}", 1)
            pipe.hincrbyfloat(keys.metric(name), f"{label}|sum", seconds)
            pipe.execute()
        except redis.exceptions.RedisError as exc:
            log.warning("metric %s not recorded: %s", name, exc)

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

    def counter(self, name: str) -> dict[str, int]:
        """Current values of a counter, by label JSON (for /stats and tests)."""
        return {str(label): int(value) for label, value in self.redis.hgetall(keys.metric(name)).items()}

    def average(self, name: str) -> float | None:
        """Mean of a histogram's observations, None before the first one."""
        total, count = 0.0, 0
        for field, value in self.redis.hgetall(keys.metric(name)).items():
            bucket = str(field).rpartition("|")[2]
            if bucket == "sum":
                total += float(value)
            else:
                count += int(value)
        return total / count if count else None


class RedisCollector(Collector):
    """Reads the shared metrics from Redis at scrape time."""

    def __init__(self, client: redis.Redis, queue_key: str) -> None:
        self.redis = client
        self.queue_key = queue_key

    def collect(self) -> Iterator[Any]:
        for name, doc in COUNTERS.items():
            yield self._counter(name, doc)
        for name, doc in HISTOGRAMS.items():
            yield self._histogram(name, doc)
        queue = GaugeMetricFamily("wxbot_queue_depth", "Generation jobs waiting in the queue")
        queue.add_metric([], float(self.redis.llen(self.queue_key)))
        yield queue

    def _counter(self, name: str, doc: str) -> CounterMetricFamily:
        values = self.redis.hgetall(keys.metric(name))
        label_names = sorted({k for raw in values for k in json.loads(raw)})
        family = CounterMetricFamily(f"wxbot_{name}", doc, labels=label_names)
        for raw, value in values.items():
            labels = json.loads(raw)
            family.add_metric([labels.get(k, "") for k in label_names], float(value))
        return family

    def _histogram(self, name: str, doc: str) -> HistogramMetricFamily:
        fields = self.redis.hgetall(keys.metric(name))
        family = HistogramMetricFamily(f"wxbot_{name}", doc)
        counts = {bucket: 0.0 for bucket in [*map(str, BUCKETS), "+Inf"]}
        total = 0.0
        for field, value in fields.items():
            _, _, bucket = str(field).rpartition("|")
            if bucket == "sum":
                total += float(value)
            elif bucket in counts:
                counts[bucket] += float(value)
        cumulative, buckets = 0.0, []
        for bucket, count in counts.items():
            cumulative += count
            buckets.append((bucket, cumulative))
        family.add_metric([], buckets, total)
        return family


def registry(client: redis.Redis, queue_key: str) -> CollectorRegistry:
    found = CollectorRegistry(auto_describe=False)
    found.register(RedisCollector(client, queue_key))
    return found
