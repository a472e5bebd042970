"""Tenant key storage: only hashes are stored, lookups find exactly the live keys."""

from __future__ import annotations

import json
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.keys import KeyStore, check_tenant_name, digest

tenant_names = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF, exclude_categories=("Cs",)),
                       min_size=1, max_size=40).filter(lambda s: s.strip() != "" and "\x7f" not in s)


def test_a_key_is_stored_only_as_its_hash(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "tenants.json")
    key, entry = store.add("acme")
    text = (tmp_path / "tenants.json").read_text()
    assert key not in text and entry.sha256 == digest(key) and entry.sha256 in text
    assert stat.S_IMODE((tmp_path / "tenants.json").stat().st_mode) == 0o600
    assert store.lookup(key) == entry
    assert store.lookup(key + "x") is None
    assert store.lookup("") is None


@settings(max_examples=25, deadline=None)
@given(st.lists(tenant_names, min_size=1, max_size=5), st.data())
def test_lookup_finds_exactly_the_keys_not_revoked(names: list[str], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tenants.json"
        store = KeyStore(path)
        issued = [(name, *store.add(name)) for name in names]
        revoked = data.draw(st.sets(st.sampled_from([name for name, _, _ in issued])))
        for name in revoked:
            assert store.revoke(name)
        fresh = KeyStore(path)  # a front started now; the first lookup reads the file
        for name, key, entry in issued:
            assert fresh.lookup(key) == (None if name in revoked else entry)
        listed = json.loads(path.read_text())["keys"]
        assert all(key not in json.dumps(listed) for _, key, _ in issued)


def test_revoke_one_key_by_id_keeps_the_tenants_other_keys(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.json")
    old, old_entry = store.add("acme")
    new, new_entry = store.add("acme")
    assert store.revoke(old_entry.id) == [old_entry]
    fresh = KeyStore(tmp_path / "k.json")
    assert fresh.lookup(old) is None and fresh.lookup(new) == new_entry
    assert store.revoke("nobody") == []


def test_a_running_front_sees_a_revocation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = KeyStore(tmp_path / "k.json")
    key, _ = store.add("acme")
    assert store.lookup(key) is not None
    KeyStore(tmp_path / "k.json").revoke("acme")  # the CLI, another process
    monkeypatch.setattr(store, "_checked", 0.0)  # a second later
    assert store.lookup(key) is None


@pytest.mark.parametrize("name", ["", "   ", "a" * 257, "tab\there"])
def test_tenant_names_the_contract_refuses_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        check_tenant_name(name)
