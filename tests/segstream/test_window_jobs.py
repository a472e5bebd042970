"""Where the windows run (docs/windows.md): the main job's branch or the standalone job, never both."""

from __future__ import annotations

import pytest
import yaml

from segstream.config import DEFAULT_CONFIG


def config_with(tmp_path, enabled: bool):
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data["windows"]["enabled"] = enabled
    path = tmp_path / "segstream.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_shipped_config_has_the_windows_in_the_main_job():
    from segstream.config import load_settings

    assert load_settings(DEFAULT_CONFIG).windows.enabled


def test_the_standalone_job_refuses_to_start_while_the_main_job_has_the_windows(tmp_path):
    from jobs import windows

    # Refused before any JVM starts: both would write the same topics with the same transactional ids.
    with pytest.raises(SystemExit, match="windows.enabled is true"):
        windows.main(["--config", str(config_with(tmp_path, True))])
