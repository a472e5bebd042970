"""The PII policy end to end (docs/security.md, "Item 6"): the job on the real broker, emulator and
MiniCluster, one tenant policed (email hashed, phone dropped, country hashed), one not. Every
evaluation equals the Python engine's under the same policy (segstream.testing). No raw
policed value reaches the evaluations, the Bigtable history or profiles, or the dead letters (which
keep the HMAC and length of the original instead, byte for byte as the Python engine writes them);
the unpoliced tenant keeps its fields; and `segstream recompute --report` over the Bigtable history
finds every live profile equal (the history holds the values the live job saw)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import yaml

from operators.events import InvalidEvent, dead_letter, parse_record
from segstream.config import PROJECT_ROOT
from segstream.kafka_admin import read_topic, value_of
from segstream.produce import Record, TrafficSpec, generate, produce_records
from segstream.testing import assert_evaluations_are_python, run_job, write_config
from sinks.bigtable import point_at_instance

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

POLICED, OPEN = "tenant-1", "default"
POLICY = {"values.email": "hash", "values.phone": "drop", "values.country": "hash"}
MARK = "PII-"  # in every email and phone value: no hash (hex) and no other field contains it
KEY = "integration-test-key"


def with_pii(records: list[Record]) -> tuple[list[Record], list[Record]]:
    """Each valid event gets an email and a phone; plus, per tenant, invalid records holding them."""
    out = []
    for r in records:
        try:
            event = parse_record(r.value)
        except InvalidEvent:
            out.append(r)
            continue
        values = {**event.values, "email": f"{MARK}{event.user_id}@example.com", "phone": f"{MARK}+81-3-{len(out)}"}
        out.append(r._replace(value=msgspec.json.encode({
            "event_id": event.event_id, "tenant": event.tenant, "user_id": event.user_id, "ts": event.ts,
            "name": event.name, "values": values})))
    bad = [Record(b"u-bad", msgspec.json.encode({
        "event_id": f"bad-{tenant}-{i}", "tenant": tenant, "user_id": "u-bad", "ts": "not a time", "name": "x",
        "values": {"email": f"{MARK}bad{i}@example.com", "plan": "pro"}}), 1_000) for tenant in (POLICED, OPEN)
        for i in range(3)]
    return out + bad, bad


def all_cells(settings, table_id: str) -> dict[bytes, bytes]:
    """{row key: every cell value of the row, concatenated}."""
    from google.cloud.bigtable.data import BigtableDataClient, ReadRowsQuery

    point_at_instance(settings.bigtable)
    client = BigtableDataClient(project=settings.bigtable.project)
    try:
        table = client.get_table(settings.bigtable.instance, table_id)
        return {row.row_key: b"\x00".join(c.value for c in row.cells) for row in table.read_rows(ReadRowsQuery())}
    finally:
        client.close()


def test_policed_tenant_keeps_no_raw_pii_and_the_history_recomputes_equal(job_config, tmp_path, monkeypatch):
    base, base_path = job_config
    data = yaml.safe_load(base_path.read_text())
    data["pii"] = {"tenants": {POLICED: POLICY}}
    path = tmp_path / "pii.yaml"
    settings = write_config(path, data)
    monkeypatch.setenv("SEGSTREAM_PII_HMAC_KEY", KEY)  # the job (and recompute) inherit it
    policy = settings.pii.policy()
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    records, bad = with_pii(list(generate(TrafficSpec(events=600, users=60, tenants=2, seed=5,
                                                      invalid_ratio=0.0))))
    produce_records(bootstrap, topics.events, records, progress=False)

    run_job(path)

    # Evaluations: the policed tenant's country stat is a hash, the open tenant's is a country.
    evaluations = [msgspec.json.decode(value_of(m)) for m in read_topic(bootstrap, topics.evaluations)]
    assert len(evaluations) == len(records) - len(bad)
    # Each equal to the Python engine's under the same policy (the JVM redacts as Python does).
    assert_evaluations_are_python(settings, read_topic(bootstrap, topics.events), evaluations)
    by_tenant = {t: [e for e in evaluations if e["tenant"] == t] for t in (POLICED, OPEN)}
    assert by_tenant[POLICED] and by_tenant[OPEN]
    assert all(MARK not in json.dumps(e) for e in evaluations)  # no stat reads email or phone
    policed_countries = {e["stats"]["country"] for e in by_tenant[POLICED]} - {None}
    open_countries = {e["stats"]["country"] for e in by_tenant[OPEN]} - {None}
    assert policed_countries and all(len(c) == 64 for c in policed_countries)
    assert open_countries and all(len(c) == 2 for c in open_countries)
    assert {policy.hash_value(c) for c in open_countries} & policed_countries, "the same countries, hashed"

    # Bigtable: the policed tenant's event rows and profiles hold no raw value (the email's HMAC
    # instead, no phone); the open tenant's rows hold them as sent.
    events = all_cells(settings, settings.bigtable.events_table)
    profiles = all_cells(settings, settings.bigtable.profiles_table)
    assert len(events) == len(evaluations)
    for rows in (events, profiles):
        policed = [v for k, v in rows.items() if f"_{POLICED}_".encode() in k]
        assert policed and not any(MARK.encode() in v for v in policed)
    policed_events = [v for k, v in events.items() if f"_{POLICED}_".encode() in k]
    assert all(b'"email":"' in v and b'"phone"' not in v for v in policed_events)
    assert all(MARK.encode() in v for k, v in events.items() if f"_{OPEN}_".encode() in k)

    # Dead letters: the policed tenant's keep no original, byte for byte Python's; the open one's do.
    letters = {json.loads(value_of(m))["offset"]: value_of(m) for m in read_topic(bootstrap, topics.dead_letters)}
    assert len(letters) == len(bad)
    originals = {m.offset: m for m in read_topic(bootstrap, topics.events) if m.key == b"u-bad"}
    for offset, letter in letters.items():
        raw = value_of(originals[offset])
        d = json.loads(letter)
        with pytest.raises(InvalidEvent) as why:
            parse_record(raw)
        assert letter == dead_letter(raw, str(why.value), topics.events, d["partition"], offset, policy)
        if f'"tenant":"{POLICED}"'.encode() in raw:
            assert MARK.encode() not in letter and d["original_hmac"] == policy.hash(raw)
            assert d["redacted"]["values"] == {"email": policy.hash_value(json.loads(raw)["values"]["email"]),
                                               "plan": "pro"}
        else:
            assert base64.b64decode(d["original_b64"]) == raw

    # The batch layer replays the history the job wrote: every profile equal.
    report = tmp_path / "report.json"
    result = subprocess.run([str(Path(sys.executable).parent / "segstream"), "recompute", "--report", str(report),
                             "--out", str(tmp_path / "out"), "--workers", "1"],
                            env={**os.environ, "SEGSTREAM_CONFIG": str(path)}, cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    summary = json.loads(report.read_text())
    assert summary["equal_pct"] == 100.0 and summary["compared_users"] == len(profiles), summary
