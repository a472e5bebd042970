"""The Bigtable sink's configuration: the `bigtable:` section of conf/segstream.yaml.

It lives with the sink so the sink depends on nothing outside it; segstream.config.Settings
composes it as `bigtable`, so it is overridden like every section, e.g.
SEGSTREAM_BIGTABLE__INSTANCE=prod or SEGSTREAM_BIGTABLE__EMULATOR_HOST= (empty: a real instance).
"""

from __future__ import annotations

from pydantic import BaseModel


class BigtableConfig(BaseModel):
    enabled: bool = True
    # host:port of the emulator; empty in production (the client then uses real credentials).
    emulator_host: str = "127.0.0.1:18086"
    project: str = "segstream-local"
    instance: str = "segstream"
    events_table: str = "events"
    profiles_table: str = "profiles"
    retention_days: int = 90
    hash_prefix_hex: int = 4
    # The job's sink retries transient errors this long before the rows fail the job (which then
    # restarts from its last checkpoint: flink.restart_*). BigtableSink.giveUpAfter.
    give_up_after_s: int = 300
