"""`segstream alerts notify` (segstream/notifier.py) against a local HTTP receiver: every alert
of the `alerts` topic is POSTed (Slack-compatible body, id in the body and a header), a failing
receiver is retried with backoff, offsets are committed only after a delivery (a notifier that
gives up leaves the alert to the next one: at least once), and the receiver dedupes by id."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from confluent_kafka import Producer

from segstream import window_reference as ref
from segstream.notifier import Notifier, NotifyError
from segstream.testing import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


class Receiver:
    """A webhook on a free local port: answers `fail` statuses first, then 200; keeps every body
    and the set of alert ids (what a deduplicating receiver would act on)."""

    def __init__(self, fail: list[int] | None = None):
        self.fail = list(fail or [])
        self.bodies: list[dict] = []
        self.headers: list[str | None] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = receiver.fail.pop(0) if receiver.fail else 200
                if status == 200:
                    receiver.bodies.append(body)
                    receiver.headers.append(self.headers.get("X-Segstream-Alert-Id"))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def ids(self) -> set[str]:
        return {b["id"] for b in self.bodies}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def alert(n: int) -> dict:
    start = 1_700_000_000_000 // 300_000 * 300_000 + n * 300_000
    key = "default/page_views"
    return {"id": ref.alert_id("default", key, start, start + 300_000), "tenant": "default", "key": key,
            "window": "page_views", "event": "page_view", "dimension": None, "value": None,
            "window_start": start, "window_end": start + 300_000, "count": 500 + n, "baseline": 20.0,
            "baseline_windows": 6, "factor": 5.0, "min_count": 100, "ratio": (500 + n) / 20}


def produce_alerts(settings, alerts: list[dict]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    for a in alerts:
        producer.produce(settings.kafka.topics.alerts, json.dumps(a).encode(), a["key"].encode())
    assert producer.flush(30) == 0


def notifier(settings, url: str, max_attempts: int = 5) -> Notifier:
    config = settings.alerts.model_copy(update={"webhooks": [url], "max_attempts": max_attempts,
                                                "backoff_initial_s": 0.01, "backoff_max_s": 0.05})
    return Notifier(settings, config, log=lambda _line: None)


def test_every_alert_is_posted_with_retries_and_committed_after_delivery(job_config):
    settings, _ = job_config
    receiver = Receiver(fail=[500, 503, 429])  # the first alert needs 4 attempts
    try:
        produce_alerts(settings, [alert(0), alert(1), alert(2)])
        assert notifier(settings, receiver.url).run(once=True) == 3
        assert receiver.ids == {alert(n)["id"] for n in range(3)} and len(receiver.bodies) == 3
        assert receiver.headers == [b["id"] for b in receiver.bodies]
        first = receiver.bodies[0]
        assert first["alert"] == alert(0) and "Surge in default: 500 page_view" in first["text"]
        assert "up 2400 %" in first["text"]
        # Committed: a second notifier of the same group has nothing left to send.
        assert notifier(settings, receiver.url).run(once=True) == 0
        produce_alerts(settings, [alert(3)])
        assert notifier(settings, receiver.url).run(once=True) == 1
        assert len(receiver.bodies) == 4
    finally:
        receiver.close()


def test_an_undelivered_alert_is_sent_again_and_deduplicated_by_id(job_config):
    settings, _ = job_config
    produce_alerts(settings, [alert(0), alert(1)])
    down = Receiver(fail=[500] * 3)
    try:
        with pytest.raises(NotifyError, match="failed 3 times"):
            notifier(settings, down.url, max_attempts=3).run(once=True)
        assert down.bodies == []
    finally:
        down.close()
    # a 4xx other than 408/429 is not retried: the notifier stops, nothing is committed
    refusing = Receiver(fail=[404])
    try:
        with pytest.raises(NotifyError, match="refused"):
            notifier(settings, refusing.url).run(once=True)
    finally:
        refusing.close()
    receiver = Receiver()
    try:
        assert notifier(settings, receiver.url).run(once=True) == 2  # nothing was lost
        # the same alert again (as a restored notifier or job replay would send it): same id
        produce_alerts(settings, [alert(1)])
        assert notifier(settings, receiver.url).run(once=True) == 1
        assert len(receiver.bodies) == 3 and receiver.ids == {alert(0)["id"], alert(1)["id"]}
    finally:
        receiver.close()
