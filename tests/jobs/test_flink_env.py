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


def test_restarts_use_exponential_delay_and_never_give_up_by_default():
    from jobs.flink_env import restart_strategy
    from segstream.config import FlinkConfig, load_settings

    shipped = restart_strategy(load_settings().flink)  # conf/segstream.yaml as shipped
    assert shipped["restart-strategy.type"] == "exponential-delay"
    assert "restart-strategy.exponential-delay.attempts-before-reset-backoff" not in shipped  # Flink: unlimited
    assert shipped["restart-strategy.exponential-delay.max-backoff"] == "60000 ms"
    assert shipped["restart-strategy.exponential-delay.reset-backoff-threshold"] == "600000 ms"
    bounded = restart_strategy(FlinkConfig(restart_attempts=7))
    assert bounded["restart-strategy.exponential-delay.attempts-before-reset-backoff"] == "7"
    assert restart_strategy(FlinkConfig(restart_attempts=0)) == {"restart-strategy.type": "none"}
