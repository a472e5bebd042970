"""What every end-to-end test checks about the job's outputs, against the input read back from Kafka."""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterable

import msgspec

from operators.events import Event, InvalidEvent, parse_record
from segstream.config import Settings
from segstream.kafka_admin import Message, read_topic
from segstream.produce import Record


def events_by_user(messages: Iterable[Message | Record]) -> tuple[dict[tuple[str, str], list[Event]], list]:
    """Valid events per user in partition order (the order the job sees them), and the invalid records
    (topic messages, or records about to be produced)."""
    per_user: dict[tuple[str, str], list[Event]] = defaultdict(list)
    invalid = []
    for m in messages:
        try:
            event = parse_record(m.value)
        except InvalidEvent:
            invalid.append(m)
            continue
        per_user[(event.tenant, event.user_id)].append(event)
    return per_user, invalid


def input_events(settings: Settings) -> tuple[dict[tuple[str, str], list[Event]], list[Message]]:
    """events_by_user over the whole events topic."""
    return events_by_user(read_topic(settings.kafka.bootstrap_servers, settings.kafka.topics.events))


def valid_ids_of(messages: Iterable[Message | Record]) -> set[str]:
    """The event ids of the valid events among `messages`."""
    per_user, _ = events_by_user(messages)
    return {e.event_id for events in per_user.values() for e in events}


def valid_event_ids(settings: Settings) -> set[str]:
    """valid_ids_of the whole events topic."""
    return valid_ids_of(read_topic(settings.kafka.bootstrap_servers, settings.kafka.topics.events))


def last_evaluations(evaluations: list[dict]) -> dict[tuple[str, str], dict]:
    """Each user's evaluation with the highest seq."""
    last: dict[tuple[str, str], dict] = {}
    for d in evaluations:
        key = (d["tenant"], d["user_id"])
        if key not in last or d["seq"] > last[key]["seq"]:
            last[key] = d
    return last


def assert_dead_letters_are(settings: Settings, invalid: list[Message]) -> list[dict]:
    """Every invalid record is dead-lettered (at least once), and nothing else; returns the dead letters."""
    dead = [msgspec.json.decode(m.value)
            for m in read_topic(settings.kafka.bootstrap_servers, settings.kafka.topics.dead_letters)]
    assert {(d["partition"], d["offset"]) for d in dead} == {(m.partition, m.offset) for m in invalid}
    return dead


def stored_event_rows(settings: Settings) -> list[bytes]:
    """Every row key of the Bigtable events table."""
    from google.cloud.bigtable.data import BigtableDataClient, ReadRowsQuery

    from sinks.bigtable import point_at_instance

    point_at_instance(settings.bigtable)
    client = BigtableDataClient(project=settings.bigtable.project)
    try:
        table = client.get_table(settings.bigtable.instance, settings.bigtable.events_table)
        return [row.row_key for row in table.read_rows(ReadRowsQuery())]
    finally:
        client.close()


def expected_event_rows(settings: Settings, per_user: dict[tuple[str, str], list[Event]]) -> set[bytes]:
    """The Bigtable events-table row keys of the valid input events."""
    from sinks.bigtable import keys

    width = settings.bigtable.hash_prefix_hex
    return {keys.event_key(e.tenant, e.user_id, e.ts, e.event_id, width)
            for events in per_user.values() for e in events}


def sinks_complete(settings: Settings, per_user: dict[tuple[str, str], list[Event]],
                   invalid: list[Message]) -> Callable[[], bool]:
    """A condition for wait_for: Bigtable holds a row for every valid event and every invalid record
    is dead-lettered (what a restored job must have redone before it may be stopped)."""
    rows = expected_event_rows(settings, per_user)
    locations = {(m.partition, m.offset) for m in invalid}

    def complete() -> bool:
        if not rows <= set(stored_event_rows(settings)):
            return False
        dead = read_topic(settings.kafka.bootstrap_servers, settings.kafka.topics.dead_letters)
        return locations <= {(d["partition"], d["offset"]) for d in (msgspec.json.decode(m.value) for m in dead)}

    return complete


def assert_event_log_is(settings: Settings, per_user: dict[tuple[str, str], list[Event]]) -> None:
    """The Bigtable events table holds exactly the valid input events, each once."""
    expected = expected_event_rows(settings, per_user)
    stored = stored_event_rows(settings)
    assert len(stored) == len(set(stored)) and set(stored) == expected, (
        f"Bigtable holds {len(set(stored))} rows, {len(set(stored) - expected)} unexpected, "
        f"{len(expected - set(stored))} missing")
