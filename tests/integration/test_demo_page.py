"""The demo page end to end: the real stack, the job (unbounded), a front (`segstream serve`) and
Debian's Chromium, headless, driven by Selenium through /usr/bin/chromedriver. Each click sends one
event through the page's tracking snippet; the segments, entered and exited the page shows for it
must be those of the evaluation the job wrote to `evaluations` for that event_id."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
import pytest
import yaml

from segstream.job_process import JobProcess
from segstream.kafka_admin import read_topic
from segstream.testing import free_port, wait_for, write_config
from serving.keys import KeyStore
from serving.process import FrontProcess, http_json

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Headless as root in a container; the rest keeps Chromium off the network: without them it keeps
# trying Google's services (component updates, sync, field trials, QUIC probes).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage")
DEADLINE_MS = 10_000  # generous for a loaded machine: the test is about which answer, not how fast


@contextmanager
def chromium(workdir: Path) -> Iterator:
    """A headless Chromium session. The Service names chromedriver and the options the browser, so
    Selenium Manager never runs (it would try to download both)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), (
        "Debian's chromium and chromium-driver are needed: scripts/test.sh installs them "
        "(apt-get install -y chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={workdir / 'chromium-profile'}"):
        options.add_argument(flag)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(workdir / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_demo_page_shows_the_evaluations_of_its_events(job_config, tmp_path):
    from selenium.webdriver.common.by import By

    base, config_path = job_config
    data = yaml.safe_load(config_path.read_text())
    data["serving"] = {"reply_topic_prefix": f"{base.kafka.topics.events}-reply-", "deadline_ms": DEADLINE_MS,
                       "keys_file": str(tmp_path / "tenants.json"), "instance_id": "demo-page"}
    settings = write_config(config_path, data)
    key, _ = KeyStore(tmp_path / "tenants.json").add("acme")  # acme has a rule of its own in conf/rules.yaml

    job = JobProcess.start(config_path, [], tmp_path / "job.log", flink_log_dir=tmp_path / "flink-log")
    front = FrontProcess.start(config_path, free_port(), tmp_path / "front.log")
    try:
        front.wait_ready(120)
        wait_for(lambda: http_json("POST", front.url + "/v1/track", {"user_id": "warm", "name": "view"}, key,
                                   timeout=30)[0] == 200, 600, "the job to answer", 0.5, abort=job.exit_reason)

        clicks = ["view-home", "view-pricing", "purchase", "view-product", "add-to-cart", "view-home"]
        with chromium(tmp_path) as browser:
            browser.get(f"{front.url}/demo?key={key}&user=visitor-1")
            assert browser.title == "segstream demo shop"
            for n, button in enumerate(clicks, 1):
                browser.find_element(By.ID, button).click()
                wait_for(lambda n=n: len(browser.find_elements(By.CSS_SELECTOR, "#log tr")) == n, 60,
                         f"the answer to click {n}", 0.05, abort=front.exit_reason)
            rows = [{"event_id": row.get_attribute("data-event-id"), "status": row.get_attribute("data-status"),
                     **{name: row.find_element(By.CLASS_NAME, name).text
                        for name in ("seq", "segments", "entered", "exited")}}
                    for row in reversed(browser.find_elements(By.CSS_SELECTOR, "#log tr"))]
            now = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#segments li")]
            now_entered = browser.find_element(By.ID, "entered").text
            now_exited = browser.find_element(By.ID, "exited").text

        assert [row["status"] for row in rows] == ["200"] * len(clicks), rows
        ids = [row["event_id"] for row in rows]
        evaluations: dict[str, dict] = {}
        wait_for(lambda: evaluations.update({
            e["event_id"]: e for e in (msgspec.json.decode(m.value) for m in read_topic(
                settings.kafka.bootstrap_servers, settings.kafka.topics.evaluations, committed_only=False))})
            or set(ids) <= set(evaluations), 120, "the page's evaluations on the topic", 0.5)

        def shown(names: list[str]) -> str:  # as demo.js lists them
            return ", ".join(names) or "-"

        for row in rows:
            evaluation = evaluations[row["event_id"]]
            assert (evaluation["tenant"], evaluation["user_id"]) == ("acme", "visitor-1")
            assert row == {"event_id": row["event_id"], "status": "200", "seq": str(evaluation["seq"]),
                           "segments": shown(evaluation["segments"]), "entered": shown(evaluation["entered"]),
                           "exited": shown(evaluation["exited"])}, evaluation
        last = evaluations[ids[-1]]
        assert (now, now_entered, now_exited) == (last["segments"], shown(last["entered"]), shown(last["exited"]))
        assert [evaluations[i]["seq"] for i in ids] == list(range(1, len(clicks) + 1))
        # The rules move this visitor in and out of segments: the page showed real changes.
        assert any(evaluations[i]["entered"] for i in ids) and any(evaluations[i]["exited"] for i in ids)
    finally:
        front.kill()
        job.kill()
