"""Rule ownership and erasure on the real stack (docs/security.md, issue 14 items 2 and 5), one job
run (unbounded, as in production) for every check:

- rule records unsigned, forged, or signed by a tenant outside its scope are dead-lettered with the
  reason and change no evaluation; those of `segstream rules publish|delete` are accepted;
- a forged erase command, and one signed by another tenant, are dead-lettered and erase nothing;
- an operator's erase command mid-traffic (after the user's events on its partition) clears the
  user's keyed state: their next event has seq 1 and fresh stats; their Bigtable event rows and
  profile are gone but for what they did afterwards; the same user_id in another tenant and the
  other users evaluate exactly as the Python engine says and keep every Bigtable row;
- through the front: DELETE /v1/users/{id} with an unknown key is 401 and with another tenant's key
  erases that tenant's user only; with the tenant's key it answers 200 with the job's
  acknowledgement, the user's next tracked event is seq 1 and Bigtable loses the older rows;
- `segstream erase USER --tenant T` (an operator) waits for the acknowledgement and erases that
  tenant's user only.
"""

from __future__ import annotations

import json
import time

import msgspec
import pytest
import yaml
from typer.testing import CliRunner

from operators import ownership
from operators.ownership import signing_keys
from segstream import cli
from segstream.job_process import JobProcess
from segstream.kafka_admin import read_topic, value_of
from segstream.produce import Record, erase_command, produce_records, signed_rule
from segstream.replay import python_replay
from segstream.testing import stored_event_rows, wait_for, write_config
from serving.keys import KeyStore
from sinks.bigtable import keys as bt_keys
from sinks.bigtable.reader import read_profile
from tests.serving.conftest import auth, front

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

RULE = {"description": "d", "when": "events_total >= 1"}


def event(tenant: str, user: str, n: int, ts: int, amount: int = 10) -> Record:
    body = {"event_id": f"{tenant}-{user}-{n}", "tenant": tenant, "user_id": user, "ts": ts + n,
            "name": "purchase", "values": {"amount": amount}}
    return Record(user.encode(), msgspec.json.encode(body), ts + n)


def test_only_owners_change_rules_and_an_erased_user_leaves_nothing(job_config, tmp_path):
    base, config_path = job_config
    data = yaml.safe_load(config_path.read_text())
    data["serving"] = {"reply_topic_prefix": f"{base.kafka.topics.events}-reply-", "deadline_ms": 10_000,
                       "erase_deadline_ms": 60_000}
    settings = write_config(config_path, data)
    bootstrap, topics = settings.kafka.bootstrap_servers, settings.kafka.topics
    width = settings.bigtable.hash_prefix_hex
    keys = signing_keys(settings.ownership)
    now = int(time.time() * 1000) - 60_000

    # Rule records nobody may write: none of them may ever show up in a segment.
    def rule(rule_id: str, tenant: str | None = None) -> bytes:
        return json.dumps({"id": rule_id, **RULE, **({"tenant": tenant} if tenant else {})}).encode()

    bad_rules = {
        "unsigned": (Record(b"unsigned", rule("unsigned"), None), "rule: " + ownership.NO_SIGNATURE),
        "forged": (signed_rule(["guessed"], "forged", rule("forged")), "rule: " + ownership.MISMATCH),
        "acme:scope": (signed_rule(keys, "acme:scope", rule("acme:scope", "acme"), owner="globex"),
                       "rule: rule id 'acme:scope' is outside its owner's scope 'globex:'"),
        "globex:tenant": (signed_rule(keys, "globex:tenant", rule("globex:tenant", "acme"), owner="globex"),
                          "rule: rule 'globex:tenant': tenant 'acme' is not its owner's 'globex'"),
    }
    produce_records(bootstrap, topics.rules, [r for r, _ in bad_rules.values()], progress=False)
    # The CLI signs as an operator: its records are accepted (seen in the rule log below).
    env = {"SEGSTREAM_CONFIG": str(config_path)}
    rule_file = tmp_path / "cli_rule.yaml"
    rule_file.write_text(yaml.safe_dump({"id": "cli_rule", "tenant": "nobody", **RULE}))
    for command in (["rules", "publish", str(rule_file)], ["rules", "delete", "cli_rule"]):
        result = CliRunner().invoke(cli.app, command, env=env)
        assert result.exit_code == 0, result.output

    before = ([event("acme", "gone", n, now, 100) for n in range(5)] + [event("acme", "kept", n, now) for n in range(5)]
              + [event("globex", "gone", n, now) for n in range(3)])
    forged_erasures = [erase_command(["guessed"], "acme", "kept", "forged-1"),
                       erase_command(keys, "acme", "kept", "other-tenant-1", owner="globex")]
    after = ([event("acme", "gone", n, now, 7) for n in range(10, 12)] + [event("acme", "kept", n, now)
                                                                         for n in range(5, 7)]
             + [event("globex", "gone", n, now) for n in range(3, 5)])
    produce_records(bootstrap, topics.events,
                    before + forged_erasures + [erase_command(keys, "acme", "gone", "erase-1")] + after, progress=False)

    store = KeyStore(tmp_path / "tenants.json")
    key_acme, _ = store.add("acme")
    key_globex, _ = store.add("globex")
    job = JobProcess.start(config_path, [], tmp_path / "job.log", flink_log_dir=tmp_path / "flink-log")
    try:
        def evaluations() -> list[dict]:
            return [msgspec.json.decode(value_of(m)) for m in read_topic(bootstrap, topics.evaluations,
                                                                         committed_only=False)]

        wait_for(lambda: len(evaluations()) >= len(before) + len(after), 600, "the evaluations", 1,
                 abort=job.exit_reason)
        by_user: dict[tuple[str, str], list[dict]] = {}
        for e in evaluations():
            by_user.setdefault((e["tenant"], e["user_id"]), []).append(e)

        # The erased user starts afresh after the command; before it, nothing was amiss.
        gone = by_user["acme", "gone"]
        assert [e["seq"] for e in gone] == [1, 2, 3, 4, 5, 1, 2]
        assert [(e["stats"]["events_total"], e["stats"]["total_spent"]) for e in gone[5:]] == [(1, 7), (2, 14)]
        # Everyone else evaluates exactly as the Python engine does without any erasure, and no
        # refused rule is in any segment.
        script = [json.dumps({"catalogue": yaml.safe_load(settings.path(settings.stats_file).read_text())}),
                  json.dumps({"rules": yaml.safe_load(settings.path(settings.rules_file).read_text())["rules"]})]
        for user in (("acme", "kept"), ("globex", "gone")):
            records = [r for r in before + after if r.key == user[1].encode()
                       and msgspec.json.decode(r.value)["tenant"] == user[0]]
            expected = [json.loads(line)["evaluation"] for line in
                        python_replay(script + [json.dumps({"event": r.value.decode()}) for r in records])]
            assert [{k: v for k, v in e.items() if k != "rules_version"} for e in by_user[user]] == expected, user
        assert not {s for es in by_user.values() for e in es for s in e["segments"]} & set(bad_rules)

        def dead_letters() -> list[dict]:
            return [msgspec.json.decode(value_of(m)) for m in read_topic(bootstrap, topics.dead_letters)]

        wait_for(lambda: len(dead_letters()) >= len(bad_rules) + len(forged_erasures), 120, "the dead letters", 0.5)
        reasons = sorted(d["reason"] for d in dead_letters())
        assert reasons == sorted([r for _, r in bad_rules.values()] + [
            "erase: " + ownership.MISMATCH, "erase: tenant 'acme' is not its owner's 'globex'"])

        log = [msgspec.json.decode(value_of(m)) for m in read_topic(bootstrap, topics.rules_log)]
        assert {(e["rule_id"], e["accepted"]) for e in log if "rule_id" in e} == \
            {*((rule_id, False) for rule_id in bad_rules), ("cli_rule", True)}
        assert [e["value"] is None for e in log if e.get("rule_id") == "cli_rule"] == [False, True]

        # The erasures topic is written by the reply sink, at its own pace: wait for it.
        acks = wait_for(lambda: [msgspec.json.decode(value_of(m)) for m in read_topic(
            bootstrap, topics.erasures, committed_only=False)], 120, "the acknowledgement on erasures", 0.5)
        assert acks == [{"erasure_id": "erase-1", "tenant": "acme", "user_id": "gone", "owner": "",
                         "erased": "state", "had_state": True}]

        # Bigtable: the erased user's rows are those after the erasure; the others' are all there.
        def rows_of(tenant: str, user: str) -> set[bytes]:
            prefix = bt_keys.user_prefix(tenant, user, width)
            return {k for k in stored_event_rows(settings) if k.startswith(prefix)}

        def keys_of(records: list[Record]) -> set[bytes]:
            return {bt_keys.event_key(b["tenant"], b["user_id"], b["ts"], b["event_id"], width)
                    for b in (msgspec.json.decode(r.value) for r in records)}

        def profile_seq(tenant: str, user: str) -> int | None:
            profile = read_profile(settings.bigtable, tenant, user)
            return None if profile is None else profile["seq"]

        gone_after = [r for r in after if r.value and b'"acme"' in r.value and r.key == b"gone"]
        wait_for(lambda: rows_of("acme", "gone") == keys_of(gone_after) and profile_seq("acme", "gone") == 2,
                 120, "the erased user's Bigtable rows", 0.5)
        for tenant, user in (("acme", "kept"), ("globex", "gone")):
            mine = [r for r in before + after if r.key == user.encode() and f'"{tenant}"'.encode() in r.value]
            wait_for(lambda t=tenant, u=user, m=mine: rows_of(t, u) == keys_of(m), 120, f"{tenant}/{user}'s rows", 0.5)
            assert profile_seq(tenant, user) == len(mine)

        # The front: a tenant key erases its own tenant's users only.
        with front(settings, store, "erase") as client:
            wait_for(client.app.state.front.replies_ready.is_set, 60, "the reply consumer", 0.05)
            assert client.delete("/v1/users/kept", headers=auth("sk_nope")).status_code == 401
            response = client.delete("/v1/users/kept", headers=auth(key_globex))  # globex's "kept": nobody
            assert response.status_code == 200, response.text
            assert (response.json()["tenant"], response.json()["had_state"]) == ("globex", False)
            tracked = client.post("/v1/track", json={"user_id": "kept", "name": "view"}, headers=auth(key_acme))
            assert tracked.status_code == 200 and tracked.json()["seq"] == 8, tracked.text  # acme's "kept" untouched

            response = client.delete("/v1/users/kept", headers=auth(key_acme))
            assert response.status_code == 200, response.text
            assert response.json() | {"erasure_id": ""} == {"erasure_id": "", "tenant": "acme", "user_id": "kept",
                                                            "owner": "acme", "erased": "state", "had_state": True}
            new_ts = int(time.time() * 1000)
            tracked = client.post("/v1/track", json={"event_id": "kept-new", "user_id": "kept", "name": "view",
                                                     "ts": new_ts}, headers=auth(key_acme))
            assert tracked.status_code == 200 and tracked.json()["seq"] == 1, tracked.text
            wait_for(lambda: rows_of("acme", "kept") == {bt_keys.event_key("acme", "kept", new_ts, "kept-new", width)}
                     and profile_seq("acme", "kept") == 1, 120, "acme/kept's Bigtable rows after the erasure", 0.5)

        # The CLI, as an operator: `segstream erase` waits for the acknowledgement on `erasures`.
        result = CliRunner().invoke(cli.app, ["erase", "gone", "--tenant", "globex", "--wait", "120"], env=env)
        assert result.exit_code == 0, result.output
        assert '"had_state": true' in result.output and '"owner": ""' in result.output, result.output
        wait_for(lambda: not rows_of("globex", "gone") and profile_seq("globex", "gone") is None, 120,
                 "globex/gone's Bigtable rows to go", 0.5)
        assert rows_of("acme", "gone") == keys_of(gone_after)  # the same user_id in another tenant: untouched
        assert job.exit_reason() is None
    finally:
        job.kill()
