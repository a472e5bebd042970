"""The JVM build (segstream/jvm.py): missing tools give one line saying what to install."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from segstream import jvm
from segstream.errors import StackError


def only_on_path(tmp_path: Path, monkeypatch, *tools: str) -> None:
    """A PATH holding just these tools (links to the real ones)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        real = shutil.which(tool)
        assert real, f"{tool} is needed on this machine for the test"
        (bin_dir / tool).symlink_to(os.path.realpath(real))
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("JAVA_HOME", raising=False)


@pytest.mark.parametrize(("tools", "missing"), [
    ((), "Java not found"),
    (("java",), "javac not found"),
    (("java", "javac"), "Maven not found"),
])
def test_a_missing_tool_is_one_line_naming_it(tmp_path, monkeypatch, tools, missing):
    only_on_path(tmp_path, monkeypatch, *tools)
    with pytest.raises(StackError) as error:
        jvm.build(force=True)
    assert missing in str(error.value)
    assert "\n" not in str(error.value)


def test_a_missing_jar_says_how_to_build_it(tmp_path):
    with pytest.raises(StackError, match="run scripts/setup.sh"):
        jvm.require(tmp_path / "segstream-job.jar", "the job jar")


def test_the_build_is_current_after_setup():
    # scripts/test.sh runs scripts/setup.sh first, which builds jvm/.
    assert jvm.up_to_date()
    assert jvm.java_major(jvm.java_binary()) >= 17
