"""The batch tests' emulator: the Bigtable sink tests' fixture (an emulator of each module's own)."""

from tests.sinks.conftest import bigtable_emulator  # noqa: F401
