"""Bigtable event log and profile store (docs/bigtable.md)."""

from __future__ import annotations

import os
import warnings

from sinks.bigtable.config import BigtableConfig

EMULATOR_ENV = "BIGTABLE_EMULATOR_HOST"

# The client warns on every construction when it talks to the emulator; that is the intended setup.
warnings.filterwarnings("ignore", message="Connecting to Bigtable emulator", category=RuntimeWarning)


class BigtableUnavailable(RuntimeError):
    """The configured Bigtable instance (or the emulator) did not answer in time."""


def point_at_instance(config: BigtableConfig) -> None:
    """Route this process's Bigtable clients to the emulator when one is configured.

    The client library reads BIGTABLE_EMULATOR_HOST when a client is built (and then uses an
    insecure channel and no credentials); an empty emulator_host leaves production settings alone.
    """
    if config.emulator_host:
        os.environ[EMULATOR_ENV] = config.emulator_host
