"""segstream's JVM classes (jobs/java) compile against the installed PyFlink into a cached jar."""

from __future__ import annotations

import zipfile

from segstream.jvm_extension import ensure_extension_jar


def test_the_jar_holds_the_operator_and_is_built_once(tmp_path):
    jar = ensure_extension_jar(tmp_path)
    with zipfile.ZipFile(jar) as zf:
        assert "io/segstream/flink/TimerSafeKeyedCoProcessOperator.class" in zf.namelist()
    built = jar.stat().st_mtime_ns
    assert ensure_extension_jar(tmp_path) == jar and jar.stat().st_mtime_ns == built
    assert [p.name for p in tmp_path.iterdir()] == [jar.name], "build leftovers in the cache"
