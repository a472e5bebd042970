"""`segstream alerts notify`: each surge alert of the `alerts` topic POSTed as JSON to the
configured webhooks (`alerts.webhooks`), at least once.

- The `alerts` topic is read read_committed (the window job writes it in transactions) with the
  consumer group `alerts.group_id`; an alert's offset is committed only after every webhook
  answered 2xx, so a notifier that dies, or gives up, sends that alert again on its next start.
- Each POST is retried on a connection error, a timeout, 408, 429 or 5xx, with exponential
  backoff (`backoff_initial_s` doubling up to `backoff_max_s`, with jitter) up to `max_attempts`;
  then, or on any other 4xx (a wrong URL or body: retrying cannot help), the notifier stops with
  an error and commits nothing more.
- The body is a Slack-compatible incoming-webhook message (`text`) with the alert itself under
  `alert` and its id under `id` (also the `X-Segstream-Alert-Id` header). The id is deterministic
  (SHA-256 of tenant, key and window, computed by the job): a receiver drops an id it has seen,
  which makes the at-least-once delivery effectively once.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError, TopicPartition

from segstream.config import Settings
from segstream.errors import StackError
from segstream.windows import AlertsConfig

RETRYABLE_STATUS = {408, 429}


class NotifyError(StackError):
    """A webhook refused an alert, or kept failing past max_attempts."""


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def message(alert: dict) -> dict:
    """The webhook body for one alert: Slack's `text`, plus the alert and its id."""
    what = alert.get("event", "events") + (f" {alert['value']}" if alert.get("value") is not None else "")
    ratio = alert.get("ratio")
    up = f"up {100 * (ratio - 1):.0f} %" if ratio is not None else "from nothing"
    text = (f":rotating_light: Surge in {alert.get('tenant')}: {alert.get('count')} {what} "
            f"({alert.get('window')}) between {_time(alert['window_start'])} and {_time(alert['window_end'])}, "
            f"{up} on the mean of the {alert.get('baseline_windows')} windows before ({alert.get('baseline')}; "
            f"threshold {alert.get('factor')}x)")
    return {"text": text, "id": alert.get("id"), "alert": alert}


def post_json(url: str, body: dict, headers: dict[str, str], timeout: float) -> int:
    """POST `body` as JSON; the HTTP status (an HTTP error status is returned, not raised)."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@dataclass
class Notifier:
    settings: Settings
    config: AlertsConfig
    post: Callable[[str, dict, dict[str, str], float], int] = post_json
    sleep: Callable[[float], None] = time.sleep
    log: Callable[[str], None] = print
    sent: list[str] = field(default_factory=list)  # alert ids, in the order delivered

    def deliver(self, alert: dict) -> None:
        """POST the alert to every webhook, each with retries; NotifyError if one will not take it."""
        body = message(alert)
        headers = {"X-Segstream-Alert-Id": str(alert.get("id"))}
        for url in self.config.webhooks:
            delay = self.config.backoff_initial_s
            for attempt in range(1, self.config.max_attempts + 1):
                try:
                    status = self.post(url, body, headers, self.config.timeout_s)
                    problem = f"HTTP {status}"
                except (OSError, urllib.error.URLError) as exc:  # refused, reset, timed out
                    status, problem = None, f"{type(exc).__name__}: {exc}"
                if status is not None and 200 <= status < 300:
                    break
                if status is not None and status < 500 and status not in RETRYABLE_STATUS:
                    raise NotifyError(f"{url} refused alert {alert.get('id')}: {problem}")
                if attempt == self.config.max_attempts:
                    raise NotifyError(f"{url} failed {attempt} times for alert {alert.get('id')}: {problem}")
                self.log(f"alert {alert.get('id')}: {url} {problem}; retry {attempt} in {delay:.1f} s")
                self.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self.config.backoff_max_s)
        self.sent.append(str(alert.get("id")))

    def run(self, once: bool = False, poll_s: float = 1.0) -> int:
        """Consume `alerts` and deliver each; `once`: stop at the end offsets found at the start.
        Returns how many alerts were delivered."""
        topic = self.settings.kafka.topics.alerts
        consumer = Consumer({"bootstrap.servers": self.settings.kafka.bootstrap_servers,
                             "group.id": self.config.group_id, "isolation.level": "read_committed",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest",
                             "enable.partition.eof": True})
        try:
            ends: dict[int, int] = {}
            if once:
                from segstream.kafka_admin import end_offsets

                ends = {p: e for p, e in end_offsets(self.settings.kafka.bootstrap_servers, topic).items()}
                committed = consumer.committed([TopicPartition(topic, p) for p in ends], timeout=15)
                done = {c.partition for c in committed if c.offset >= ends[c.partition]}
                done |= {p for p, e in ends.items() if e == 0}
                if done >= set(ends):
                    return 0
            else:
                done = set()
            consumer.subscribe([topic])
            delivered = 0
            while True:
                m = consumer.poll(poll_s)
                if m is None:
                    continue
                error = m.error()
                if error:
                    if error.code() == KafkaError._PARTITION_EOF:
                        partition, offset = m.partition(), m.offset()
                        if once and partition is not None and offset is not None and offset >= ends.get(partition, 0):
                            done.add(partition)
                            if done >= set(ends):
                                return delivered
                        continue
                    raise StackError(f"reading {topic}: {error}")
                try:
                    alert = json.loads(m.value() or b"")
                except ValueError:
                    self.log(f"skipping a record that is no alert at {topic}/{m.partition()}@{m.offset()}")
                    consumer.commit(message=m, asynchronous=False)
                    continue
                self.deliver(alert)
                consumer.commit(message=m, asynchronous=False)  # only after every webhook took it
                delivered += 1
                self.log(f"delivered alert {alert.get('id')}: {alert.get('key')} {alert.get('count')} events "
                         f"in {_time(alert['window_start'])}")
        finally:
            consumer.close()
