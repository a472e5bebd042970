"""Row key properties (docs/bigtable.md, "Row keys")."""

from __future__ import annotations

import re
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sinks.bigtable import keys

# Ids built from separator and escape-sequence fragments: what the escaping must get right.
ids = st.lists(st.sampled_from(["a", "b", "_", "%", "5F", "25", "é"]), min_size=1, max_size=5).map("".join)
# Both ends of the range: ts near MAX_TS is where a missing zero-pad would break the order.
tss = st.one_of(st.integers(0, keys.MAX_TS), st.integers(keys.MAX_TS - 10**6, keys.MAX_TS), st.just(0))
events = st.tuples(ids, ids, tss, ids)


@st.composite
def near_pairs(draw):
    """Two event tuples that differ in one field, often only by an escape-looking fragment."""
    a = draw(events)
    field = draw(st.integers(0, 3))
    if field == 2:
        alt = draw(tss)
    else:
        twins = [a[field].replace("_", "%5F"), a[field].replace("%", "%25"), a[field] + "_", "_" + a[field]]
        alt = draw(st.one_of(ids, ids.map(lambda x: a[field] + x), st.sampled_from(twins)))
    return a, a[:field] + (alt,) + a[field + 1 :]
W = 4


@given(tenant=ids, user=ids, stamped=st.lists(st.tuples(tss, ids), min_size=2, max_size=20))
def test_keys_of_one_user_sort_newest_first(tenant, user, stamped):
    by_key = sorted(stamped, key=lambda e: keys.event_key(tenant, user, e[0], e[1], W))
    stamps = [ts for ts, _ in by_key]
    assert stamps == sorted(stamps, reverse=True)


pairs = st.one_of(near_pairs(), st.tuples(events, events))


def same_hash_prefix():
    """The hash prefix alone would hide most clashes; the layout must hold when two users share it."""
    return mock.patch.object(keys, "hash_prefix", lambda tenant, user_id, width: b"0" * width)


@given(pair=pairs)
def test_distinct_events_get_distinct_keys(pair):
    a, b = pair
    with same_hash_prefix():
        assert (keys.event_key(*a, W) == keys.event_key(*b, W)) == (a == b)


@given(pair=pairs)
def test_a_users_prefix_matches_only_that_users_rows(pair):
    user, other = pair[0][:2], pair[1]
    with same_hash_prefix():
        owns = keys.event_key(*other, W).startswith(keys.user_prefix(*user, W))
    assert owns == (other[:2] == user)


@given(pair=pairs)
def test_distinct_users_get_distinct_profile_keys(pair):
    a, b = pair[0][:2], pair[1][:2]
    with same_hash_prefix():
        assert (keys.profile_key(*a, W) == keys.profile_key(*b, W)) == (a == b)


def test_user_a_does_not_see_user_a_b():
    # The classic trap: without escaping, "a" + "_" is a prefix of "a_b".
    rows_of_a_b = keys.event_key("t", "a_b", 5, "e", W)
    assert not rows_of_a_b.startswith(keys.user_prefix("t", "a", W))
    assert keys.event_key("t", "a", 5, "e", W).startswith(keys.user_prefix("t", "a", W))


def test_escaping_keeps_separators_out_of_fields():
    assert keys.escape("a_b%c") == b"a%5Fb%25c"
    assert keys.escape("%5F") != keys.escape("_")


def test_hash_prefix_is_pinned_and_fixed_width():
    # sha256("acme_user%5F1")[:8]: changing the hash would move every row; this must never change.
    assert keys.hash_prefix("acme", "user_1", 4) == b"f834"
    assert keys.hash_prefix("acme", "user_1", 8) == b"f83473b8"
    assert keys.profile_key("acme", "user_1", 4) == b"f834_acme_user%5F1"


@given(tenant=ids, user=ids, width=st.integers(1, 64))
def test_hash_prefix_is_lowercase_hex_of_the_configured_width(tenant, user, width):
    prefix = keys.hash_prefix(tenant, user, width)
    assert re.fullmatch(rb"[0-9a-f]{%d}" % width, prefix)


def test_event_key_layout():
    key = keys.event_key("default", "u1", 1_700_000_000_000, "e_1", 4)
    assert key == b"2b8a_default_u1_9223370336854775807_e%5F1"
    assert len(keys.reverse_ts(0)) == len(keys.reverse_ts(keys.MAX_TS)) == keys.TS_WIDTH


@pytest.mark.parametrize("ts", [-1, keys.MAX_TS + 1])
def test_out_of_range_ts_is_rejected(ts):
    with pytest.raises(ValueError):
        keys.reverse_ts(ts)


def test_oversized_key_is_rejected():
    with pytest.raises(ValueError, match="over Bigtable"):
        keys.event_key("t", "u", 1, "x" * 5000, 4)
