"""Table layout (docs/bigtable.md, "Schema") and its idempotent creation."""

from __future__ import annotations

from datetime import timedelta

from google.api_core import exceptions as gexc
from google.api_core import retry
from google.cloud.bigtable import Client, column_family
from google.cloud.bigtable_admin_v2 import types as admin_types

from sinks.bigtable import BigtableUnavailable, point_at_instance
from sinks.bigtable.config import BigtableConfig

# events: one row per event; cell timestamp = event time, so max-age GC is retention by event time.
EVENTS_FAMILY = "e"
PAYLOAD = b"payload"  # the event as encoded by operators.events.encode_event
NAME = b"name"  # lets a scan filter by event name without decoding the payload
# SEQ (below) and RULES_VERSION, as in the event's evaluation: the live engine's order and rule set.

# profiles: one row per user; cell timestamp = seq, so the newest evaluation wins in any write order.
PROFILE_FAMILY = "p"
STATS = b"stats"
SEGMENTS = b"segments"
TS = b"ts"
EVENT_ID = b"event_id"
SEQ = b"seq"  # in both families
RULES_VERSION = b"rules_version"  # in both families

ADMIN_TIMEOUT_S = 10.0
# A short overall deadline (the gapic default retries for 60 s): `stack up` should fail fast.
_DEADLINE = {
    "retry": retry.Retry(predicate=retry.if_transient_error, timeout=ADMIN_TIMEOUT_S),
    "timeout": ADMIN_TIMEOUT_S,
}


def gc_rules(config: BigtableConfig) -> dict[str, dict[str, column_family.GarbageCollectionRule]]:
    """{table: {family: GC rule}}."""
    b = config
    return {
        b.events_table: {
            # A rewrite of an event reuses its timestamp, so it replaces the cell; one version is all.
            EVENTS_FAMILY: column_family.GCRuleUnion(
                [
                    column_family.MaxAgeGCRule(timedelta(days=b.retention_days)),
                    column_family.MaxVersionsGCRule(1),
                ]
            )
        },
        b.profiles_table: {PROFILE_FAMILY: column_family.MaxVersionsGCRule(1)},
    }


def ensure_tables(config: BigtableConfig) -> None:
    """Create missing tables and families and bring GC rules in line with the config (so a
    changed retention_days applies); existing data is kept. Safe to run any number of times."""
    b = config
    point_at_instance(b)
    client = Client(project=b.project, admin=True)
    admin = client.table_admin_client
    try:
        for table_id, families in gc_rules(b).items():
            # Every GC rule class has to_pb() but the library's base class does not declare it.
            wanted = {fid: admin_types.ColumnFamily(gc_rule=rule.to_pb())  # type: ignore[attr-defined]
                      for fid, rule in families.items()}
            name = admin.table_path(b.project, b.instance, table_id)
            try:
                table = _get_schema(admin, name)
            except gexc.NotFound:
                try:
                    admin.create_table(
                        parent=admin.instance_path(b.project, b.instance),
                        table_id=table_id,
                        table=admin_types.Table(column_families=wanted),
                        **_DEADLINE,
                    )
                    continue
                except gexc.AlreadyExists:  # created concurrently: reconcile its families below
                    table = _get_schema(admin, name)
            changes = [
                admin_types.ModifyColumnFamiliesRequest.Modification(
                    id=fid, **{"update" if fid in table.column_families else "create": family}
                )
                for fid, family in wanted.items()
                if fid not in table.column_families or table.column_families[fid].gc_rule != family.gc_rule
            ]
            if changes:
                admin.modify_column_families(name=name, modifications=changes, **_DEADLINE)
    except (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.RetryError) as exc:
        raise BigtableUnavailable(
            f"Bigtable instance {b.project}/{b.instance} at "
            f"{b.emulator_host or 'the production endpoint'} is unreachable: {exc}"
        ) from exc
    finally:
        client.close()


def _get_schema(admin, name: str) -> admin_types.Table:
    return admin.get_table(
        request={"name": name, "view": admin_types.Table.View.SCHEMA_VIEW}, **_DEADLINE
    )
