import subprocess
import sys

from segstream.config import PROJECT_ROOT, Settings, load_settings
from sinks.bigtable.config import BigtableConfig


def test_settings_compose_the_sinks_bigtable_section():
    assert isinstance(Settings().bigtable, BigtableConfig)
    assert Settings().bigtable == BigtableConfig()


def test_env_overrides_reach_the_bigtable_section(monkeypatch):
    monkeypatch.setenv("SEGSTREAM_BIGTABLE__INSTANCE", "x")
    monkeypatch.setenv("SEGSTREAM_BIGTABLE__RETENTION_DAYS", "30")
    monkeypatch.setenv("SEGSTREAM_BIGTABLE__EMULATOR_HOST", "")
    b = Settings().bigtable
    assert (b.instance, b.retention_days, b.emulator_host) == ("x", 30, "")
    assert b.project == BigtableConfig().project  # the keys not overridden keep their defaults


def test_env_beats_the_file_for_the_bigtable_section(monkeypatch, tmp_path):
    path = tmp_path / "segstream.yaml"
    path.write_text("bigtable:\n  instance: from-file\n  events_table: file-events\n")
    assert load_settings(path).bigtable.instance == "from-file"
    monkeypatch.setenv("SEGSTREAM_BIGTABLE__INSTANCE", "x")
    b = load_settings(path).bigtable
    assert (b.instance, b.events_table) == ("x", "file-events")


def test_the_sink_package_does_not_import_the_cli_package():
    """sinks/ owns its config: importing every sink module loads nothing from segstream."""
    code = ("import sys, sinks.bigtable.config, sinks.bigtable.schema, sinks.bigtable.reader, "
            "sinks.bigtable.mutations, sinks.bigtable.keys; "
            "print(sorted(m for m in sys.modules if m == 'segstream' or m.startswith('segstream.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
