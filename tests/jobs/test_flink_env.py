"""The local job's JVM flags: flink.jvm_args, then $JVM_ARGS, whose collector wins."""

from jobs.flink_env import jvm_args


def test_the_configured_flags_come_first():
    assert jvm_args("-XX:+UseParallelGC", "") == "-XX:+UseParallelGC"
    assert jvm_args("-XX:+UseParallelGC", "-XX:TieredStopAtLevel=1") == "-XX:+UseParallelGC -XX:TieredStopAtLevel=1"
    assert jvm_args("", "") == ""


def test_a_collector_in_the_environment_replaces_the_configured_one():
    # Two collectors on one command line stop the JVM ("Conflicting collector combinations").
    assert jvm_args("-XX:+UseParallelGC -Xss1m", "-XX:+UseG1GC -Xmx1g") == "-Xss1m -XX:+UseG1GC -Xmx1g"
    assert jvm_args("-XX:+UseParallelGC", "-XX:+UseSerialGC") == "-XX:+UseSerialGC"
