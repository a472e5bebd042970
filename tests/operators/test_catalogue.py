"""Stat catalogue: durations, defaults, fingerprints and the validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from operators.catalogue import CatalogueError, load_catalogue, parse_catalogue, parse_duration

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "ms"),
    [("500ms", 500), ("90s", 90_000), ("30m", 1_800_000), ("1h", 3_600_000), ("1d", 86_400_000), (" 2h ", 7_200_000)],
)
def test_parse_duration(text, ms):
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "30", "m", "1.5h", "-1m", "1w", "1 h", "1hm", "0s", 30, None])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_default_catalogue_loads():
    catalogue = load_catalogue(ROOT / "conf" / "stats.yaml")
    assert len(catalogue.stats) == 20
    assert len(set(catalogue.names)) == 20


def stat(**fields) -> dict:
    return {"name": "s", **fields}


def one(**fields):
    return parse_catalogue({"stats": [stat(**fields)]}).stats[0]


def test_defaults_for_gap_and_resolution():
    assert one(agg="sessions").gap == 30 * 60_000
    assert one(agg="count", window="1d").resolution == 60_000
    assert one(agg="count", window="2d").resolution == 3_600_000
    assert one(agg="count", window="1h", resolution="5m").resolution == 300_000


def test_fingerprint_follows_the_definition_not_its_spelling():
    assert one(agg="count", window="60m").fingerprint == one(agg="count", window="1h").fingerprint
    assert one(agg="count", window="1h").fingerprint != one(agg="count", window="2h").fingerprint
    assert one(agg="sum", field="x").fingerprint != one(agg="sum", field="y").fingerprint
    renamed = parse_catalogue({"stats": [{"name": "t", "agg": "count"}]}).stats[0]
    assert one(agg="count").fingerprint != renamed.fingerprint


@pytest.mark.parametrize(
    ("stats", "message"),
    [
        ([stat(agg="count"), stat(agg="sum", field="x")], "duplicate stat name 's'"),
        ([stat(agg="median", field="x")], "unknown agg 'median'"),
        ([stat(agg="sum")], "agg 'sum' needs a `field`"),
        ([stat(agg="distinct")], "agg 'distinct' needs a `field`"),
        ([stat(agg="count", field="x")], "agg 'count' takes no `field`"),
        ([stat(agg="count", window="1x")], "bad duration '1x'"),
        ([stat(agg="count", window="0m")], "must be greater than zero"),
        ([stat(agg="sessions", gap=30)], "duration must be a string"),
        ([stat(agg="count", window="90s")], "window 90s is not a whole multiple of resolution 1m"),
        ([stat(agg="count", window="1h", resolution="7m")], "window 1h is not a whole multiple of resolution 7m"),
        ([stat(agg="first", field="x", window="1h")], "agg 'first' cannot have a `window`"),
        ([stat(agg="sessions", window="1h")], "agg 'sessions' cannot have a `window`"),
        ([stat(agg="count", resolution="1m")], "`resolution` needs a `window`"),
        ([stat(agg="count", gap="1m")], "`gap` only applies to agg 'sessions'"),
        ([stat(agg="count", window="365d", resolution="1m")], "over the limit"),
        ([{"name": "event", "agg": "count"}], "reserved"),
        ([{"name": "in", "agg": "count"}], "reserved"),
        ([{"name": "2x", "agg": "count"}], "not a CEL identifier"),
        ([{"name": "a-b", "agg": "count"}], "not a CEL identifier"),
        ([{"agg": "count"}], "name: Field required"),
        ([stat(agg="count", evnt="a")], "evnt: Extra inputs are not permitted"),
        ([stat(agg="sum", field="")], "must not be empty"),
    ],
)
def test_invalid_catalogues_say_why(stats, message):
    with pytest.raises(CatalogueError, match="invalid stat catalogue") as raised:
        parse_catalogue({"stats": stats})
    assert message in str(raised.value)


def test_error_names_the_stat():
    with pytest.raises(CatalogueError, match=r"stats\[1\] \(spend\)"):
        parse_catalogue({"stats": [{"name": "n", "agg": "count"}, {"name": "spend", "agg": "sum"}]})


def test_not_a_catalogue_document(tmp_path):
    with pytest.raises(CatalogueError):
        parse_catalogue([{"name": "n", "agg": "count"}])
    bad_yaml = tmp_path / "stats.yaml"
    bad_yaml.write_text("stats: [\n")
    with pytest.raises(CatalogueError, match="not YAML"):
        load_catalogue(bad_yaml)
