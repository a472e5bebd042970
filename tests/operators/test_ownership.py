"""Rule ownership and erasure in the Python engine (docs/security.md): signatures, who may write
which rule, erase commands, and what an erasure leaves of a user (nothing) and of the others (all)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from operators import erasure, ownership
from operators.catalogue import parse_catalogue
from operators.ownership import DEV_KEY, OwnershipConfig, SigningError, sign, signing_keys, verify
from operators.rules import RuleSet
from segstream.replay import python_replay

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = parse_catalogue({"stats": [{"name": "visits", "agg": "count"}]})
KEYS = ["k-new", "k-old"]  # a rotation: both verify, the first signs


def rule(rule_id: str, tenant: str | None = None) -> bytes:
    body: dict = {"id": rule_id, "description": "d", "when": "visits > 1"}
    if tenant is not None:
        body["tenant"] = tenant
    return json.dumps(body).encode()


@given(purpose=st.sampled_from([ownership.RULE, ownership.ERASE]), key=st.binary(max_size=40),
       owner=st.text(max_size=20), value=st.one_of(st.none(), st.binary(max_size=200)))
def test_a_signature_verifies_and_nothing_else_does(purpose, key, owner, value):
    header = sign(KEYS, purpose, key, owner, value)
    assert verify(KEYS, purpose, key, value, header) == (owner, None)
    assert verify(["k-old", "k-new"], purpose, key, value, header) == (owner, None)  # any accepted key
    assert verify(["k-other"], purpose, key, value, header) == (None, ownership.MISMATCH)
    other = ownership.ERASE if purpose == ownership.RULE else ownership.RULE
    assert verify(KEYS, other, key, value, header)[1] == ownership.MISMATCH  # not replayable as the other kind
    assert verify(KEYS, purpose, key + b"x", value, header)[1] == ownership.MISMATCH
    assert verify(KEYS, purpose, key, (value or b"") + b"x", header)[1] == ownership.MISMATCH
    # Claiming another owner with the same MAC: the owner is signed too.
    forged = header.rsplit(b":", 1)[0] + b":" + (owner + "x").encode("utf-8", "surrogatepass")
    assert verify(KEYS, purpose, key, value, forged)[1] == ownership.MISMATCH


@given(st.binary(max_size=100))
def test_any_header_bytes_give_a_reason_never_an_exception(header):
    owner, reason = verify(KEYS, ownership.RULE, b"r", b"v", header)
    assert owner is None and reason in (ownership.NO_SIGNATURE, ownership.MALFORMED, ownership.MISMATCH)


def test_keys_come_from_the_environment_then_the_file_then_the_dev_key(tmp_path, monkeypatch):
    config = OwnershipConfig(keys_env="TEST_SEGSTREAM_KEYS")
    monkeypatch.delenv("TEST_SEGSTREAM_KEYS", raising=False)
    assert signing_keys(config) == [DEV_KEY]
    with pytest.raises(SigningError, match="no signing key"):
        signing_keys(config.model_copy(update={"allow_dev_key": False}))
    (tmp_path / "keys").write_text("file-1\n\nfile-2\n")
    assert signing_keys(config.model_copy(update={"keys_file": "keys"}), tmp_path) == ["file-1", "file-2"]
    monkeypatch.setenv("TEST_SEGSTREAM_KEYS", "env-1, env-2")
    assert signing_keys(config.model_copy(update={"keys_file": "keys"}), tmp_path) == ["env-1", "env-2"]


@pytest.mark.parametrize(("rule_id", "value", "owner", "reason"), [
    ("acme:r", rule("acme:r", "acme"), "acme", None),
    ("acme:r", None, "acme", None),  # a tenant deletes its own rule
    ("r", rule("r"), "", None),  # an operator: any rule, every tenant
    ("other:r", rule("other:r", "other"), "", None),
    ("other:r", rule("other:r", "other"), "acme", "rule id 'other:r' is outside its owner's scope 'acme:'"),
    ("other:r", None, "acme", "rule id 'other:r' is outside its owner's scope 'acme:'"),
    ("r", rule("r"), "acme", "rule id 'r' is outside its owner's scope 'acme:'"),
    ("acme:r", rule("acme:r", "other"), "acme", "rule 'acme:r': tenant 'other' is not its owner's 'acme'"),
    ("acme:r", rule("acme:r"), "acme", "rule 'acme:r': tenant None is not its owner's 'acme'"),
])
def test_a_tenant_writes_only_its_own_rules(rule_id, value, owner, reason):
    rules = RuleSet(CATALOGUE)
    header = sign(KEYS, ownership.RULE, rule_id.encode(), owner, value)
    assert rules.apply_signed_change(rule_id, value, header, KEYS) == reason
    if reason is None and value is not None:
        assert rule_id in rules.rules
    if reason is not None:
        assert not rules.rules


def test_unsigned_and_forged_rule_records_change_nothing():
    rules = RuleSet(CATALOGUE)
    value = rule("r")
    assert rules.apply_signed_change("r", value, None, KEYS) == ownership.NO_SIGNATURE
    assert rules.apply_signed_change("r", value, b"v1:" + b"0" * 64 + b":", KEYS) == ownership.MISMATCH
    assert rules.apply_signed_change("r", value, sign(["guessed"], "rule", b"r", "", value), KEYS) \
        == ownership.MISMATCH
    assert not rules.rules


def erase_line(tenant: str, user: str, erasure_id: str = "x1", owner: str = "", key: str | None = None,
               keys: list[str] = KEYS, value: bytes | None = None) -> str:
    record_key = (user if key is None else key).encode()
    value = erasure.encode(erasure_id, tenant, user) if value is None else value
    signature = sign(keys, ownership.ERASE, record_key, owner, value)
    return json.dumps({"control": {"key": record_key.decode(), "value": value.decode(),
                                   "signature": signature.decode()}})


def event_line(tenant: str, user: str, n: int, amount: int = 1) -> str:
    event = {"event_id": f"{tenant}-{user}-{n}", "tenant": tenant, "user_id": user, "ts": 1_790_000_000_000 + n,
             "name": "purchase", "values": {"amount": amount}}
    return json.dumps({"event": json.dumps(event)})


SCRIPT_HEAD = [json.dumps({"catalogue": yaml.safe_load((ROOT / "conf" / "stats.yaml").read_text())}),
               json.dumps({"rules": yaml.safe_load((ROOT / "conf" / "rules.yaml").read_text())["rules"]}),
               json.dumps({"signing_keys": KEYS})]


@given(before=st.integers(1, 6), after=st.integers(0, 4), others=st.integers(0, 4))
def test_an_erased_user_starts_afresh_and_the_others_are_untouched(before, after, others):
    script = list(SCRIPT_HEAD)
    script += [event_line("acme", "u", n, amount=100) for n in range(before)]
    script += [event_line("acme", "v", n) for n in range(others)]
    script += [event_line("beta", "u", n) for n in range(others)]  # the same user_id in another tenant
    baseline = python_replay(script + [event_line("acme", "v", 99), event_line("beta", "u", 99)])
    script.append(erase_line("acme", "u", owner="acme"))
    script += [event_line("acme", "u", 100 + n, amount=7) for n in range(after)]
    out = python_replay(script + [event_line("acme", "v", 99), event_line("beta", "u", 99)])
    erased = [json.loads(line)["erased"] for line in out if line.startswith('{"erased"')]
    assert erased == [{"erasure_id": "x1", "tenant": "acme", "user_id": "u", "owner": "acme", "erased": "state",
                       "had_state": True}]
    fresh = [json.loads(line)["evaluation"] for line in out[len(out) - 2 - after:len(out) - 2]]
    assert [e["seq"] for e in fresh] == list(range(1, after + 1))  # seq 1: nothing of before survived
    for e in fresh:
        assert e["stats"]["events_total"] == e["seq"] and e["stats"]["total_spent"] == 7 * e["seq"]
    assert out[-2:] == baseline[-2:]  # the other users evaluate exactly as without the erasure


def test_erasing_an_unknown_user_is_acknowledged_without_state():
    out = python_replay([*SCRIPT_HEAD, erase_line("acme", "nobody")])
    assert json.loads(out[0])["erased"]["had_state"] is False


@pytest.mark.parametrize(("line", "reason"), [
    (erase_line("acme", "u", keys=["forged"]), "erase: signature matches no accepted key"),
    (json.dumps({"control": {"key": "u", "value": erasure.encode("x", "acme", "u").decode(), "signature": None}}),
     "erase: no signature (header segstream-signature)"),
    (erase_line("acme", "u", owner="beta"), "erase: tenant 'acme' is not its owner's 'beta'"),
    (erase_line("acme", "u", key="w"), "erase: the record key is not the user_id"),
    (erase_line("acme", "u", value=b"[1]"), "erase: not a JSON object"),
    (erase_line("acme", "u", value=b'{"control":"erase","tenant":"acme","user_id":"u"}'),
     'erase: expected exactly {"control": "erase", "erasure_id", "tenant", "user_id"} as strings'),
    (erase_line("acme", "u", value=b'{"control":"erase","erasure_id":"","tenant":"acme","user_id":"u"}'),
     "erase: `erasure_id` must be 1 to 256 bytes of UTF-8"),
])
def test_a_refused_erase_command_is_a_dead_letter_and_erases_nothing(line, reason):
    head = [*SCRIPT_HEAD, event_line("acme", "u", 1), event_line("acme", "u", 2)]
    out = python_replay([*head, line, event_line("acme", "u", 3)])
    assert json.loads(out[2]) == {"dead_letter": reason}
    assert json.loads(out[3])["evaluation"]["seq"] == 3


def test_an_erasure_forgets_the_users_retries_too():
    """The de-duplication receipts are the user's data as well: an event_id sent before the erasure
    counts as new after it."""
    before = [*SCRIPT_HEAD, event_line("acme", "u", 1), event_line("acme", "u", 1)]
    out = python_replay([*before, erase_line("acme", "u"), event_line("acme", "u", 1)])
    assert [next(iter(json.loads(line))) for line in out] == ["evaluation", "duplicate", "erased", "evaluation"]
    assert json.loads(out[3])["evaluation"]["seq"] == 1
