"""The deployment in docker/ checked without Docker or Kubernetes (neither runs on these machines).

- docker/compose.yaml against the Compose Specification's JSON schema (docker/schemas/), plus what
  `docker compose config` checks beyond the schema (references between services, volumes, builds);
- the Kubernetes manifests (docker/k8s/) against Kubernetes' own schemas (kubernetes-validate,
  strict: unknown fields are errors) and the FlinkDeployment against the operator's CRD kept in
  docker/k8s/crds/ (unknown fields are errors too: the API server would prune them silently);
- every SEGSTREAM_* variable and configuration key the images, compose and the manifests set exists
  in segstream's Settings and validates there, and the settings they add up to agree with the Flink
  configuration next to them (checkpoint directory, parallelism);
- every file, script, command and jar the Dockerfiles, compose and the manifests name exists;
- the Dockerfiles: pinned bases, versions equal to the project's pins, a non-root final user, no
  build tools in the final stage; the pip constraints equal the project's pins.
"""

from __future__ import annotations

import ast
import base64
import functools
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pyflink
import pytest
import typer.main
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic import BaseModel

from segstream.cli import app as cli_app
from segstream.config import PROJECT_ROOT, Settings, StackConfig, load_settings
from segstream.kafka_broker import server_properties

DOCKER = PROJECT_ROOT / "docker"
K8S = DOCKER / "k8s"
COMPOSE_FILE = DOCKER / "compose.yaml"
DOCKERFILES = {"job": DOCKER / "job.Dockerfile", "front": DOCKER / "front.Dockerfile"}
CRD_FILE = K8S / "crds" / "flinkdeployments.flink.apache.org-v1.yml"
# The Kubernetes release the manifests are validated against (kubernetes-validate bundles its schemas).
KUBERNETES_VERSION = "1.34.0"
# Where the images put the project: /opt/segstream/<path> is <path> of this repository.
IMAGE_ROOT = "/opt/segstream/"
# SEGSTREAM_* variables that are not Settings keys, each read by name in the code.
NON_SETTINGS_VARIABLES = {
    "SEGSTREAM_CONFIG": "segstream/config.py",             # which YAML file load_settings reads
    "SEGSTREAM_FLINK_PROPERTIES": "jobs/flink_env.py",     # extra Flink options of a run
    "SEGSTREAM_SERVE_WORKERS": "serving/server.py",        # set by `segstream serve` for its workers
}


# --- loading ---------------------------------------------------------------------------------------

def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())  # PyYAML resolves the `<<` merges, as compose does


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    """(file name, document) of every manifest in docker/k8s (not the CRD)."""
    return [(path.name, doc) for path in sorted(K8S.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_documents() if doc["kind"] == kind]


def flink_deployment() -> dict[str, Any]:
    (deployment,) = k8s_kind("FlinkDeployment")
    return deployment


def configmap_files() -> dict[str, str]:
    """Mount path of each ConfigMap file -> its content (the mounts are the same in every pod)."""
    (configmap,) = k8s_kind("ConfigMap")
    return {f"/etc/segstream/{name}": text for name, text in configmap["data"].items()}


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """(owner, pod spec) of every pod the manifests create."""
    for doc in k8s_kind("Deployment") + k8s_kind("Job"):
        yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]
    deployment = flink_deployment()
    yield deployment["metadata"]["name"], deployment["spec"]["podTemplate"]["spec"]


def k8s_containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for owner, spec in pod_specs():
        for container in spec.get("containers", []):
            yield f"{owner}/{container['name']}", container


def dockerfile_stages(path: Path) -> list[dict[str, Any]]:
    """The stages of a Dockerfile: {"from": image, "name", "instructions": [(KEYWORD, args)]}, with
    continuation lines joined, comments dropped and global ARG defaults substituted into FROM."""
    logical: list[str] = []
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            logical.append(current)
            current = ""
    args: dict[str, str] = {}
    stages: list[dict[str, Any]] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        elif keyword == "FROM":
            parts = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest).split()
            stages.append({"from": parts[0], "name": parts[2] if len(parts) > 2 else None, "instructions": []})
        else:
            stages[-1]["instructions"].append((keyword, rest.strip()))
    return stages


def dockerfile_env(path: Path) -> dict[str, str]:
    """ENV of the final stage (what the running container has)."""
    env: dict[str, str] = {}
    for keyword, rest in dockerfile_stages(path)[-1]["instructions"]:
        if keyword == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(rest))
    return env


def interpolate(value: Any) -> str:
    """A compose value with ${VAR:-default} replaced by its default (what an empty shell gives)."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))


def pyproject() -> dict[str, Any]:
    return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())


def pom_property(name: str) -> str:
    match = re.search(rf"<{re.escape(name)}>([^<]+)</{re.escape(name)}>", (PROJECT_ROOT / "jvm/pom.xml").read_text())
    assert match, f"jvm/pom.xml has no <{name}>"
    return match.group(1)


def pinned(package: str) -> str:
    for line in pyproject()["project"]["dependencies"]:
        req = Requirement(line)
        if canonicalize_name(req.name) == canonicalize_name(package):
            (spec,) = req.specifier
            assert spec.operator == "==", f"{package} is not pinned in pyproject.toml"
            return spec.version
    raise AssertionError(f"{package} is not a dependency")


def image_tag(image: str) -> str:
    return image.split("@")[0].rpartition(":")[2]


# --- settings helpers ------------------------------------------------------------------------------

def unknown_keys(data: Any, model: type[BaseModel], path: str = "") -> list[str]:
    """Keys of a YAML mapping that the model does not have (pydantic ignores unknown nested keys,
    so a typo in a configuration file would silently keep the default)."""
    if not isinstance(data, dict):
        return []
    found = []
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            found.append(f"{path}{key}")
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found += unknown_keys(value, field.annotation, f"{path}{key}.")
    return found


def settings_field(variable: str) -> bool:
    """Whether SEGSTREAM_<SECTION>__<KEY> names a Settings field (pydantic-settings' nesting rule)."""
    model: type[BaseModel] = Settings
    parts = variable.removeprefix("SEGSTREAM_").lower().split("__")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        if i < len(parts) - 1:
            if not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
                return False
            model = field.annotation
    return True


def settings_for(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """The Settings a container with this environment builds: its SEGSTREAM_CONFIG file (from the
    image's conf/ or the ConfigMap) overridden by its SEGSTREAM_* variables."""
    for name in list(os.environ):
        if name.startswith("SEGSTREAM_"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        if name.startswith("SEGSTREAM_"):
            monkeypatch.setenv(name, value)
    config = environment.get("SEGSTREAM_CONFIG", f"{IMAGE_ROOT}conf/segstream.yaml")
    if config.startswith(IMAGE_ROOT):
        path = PROJECT_ROOT / config.removeprefix(IMAGE_ROOT)
    else:
        path = tmp_path / "segstream.yaml"
        path.write_text(configmap_files()[config])
    return load_settings(path)


def compose_environments() -> dict[str, dict[str, str]]:
    """Service -> its environment: the image's ENV, then the service's (as the container sees it)."""
    images = {"segstream-job": dockerfile_env(DOCKERFILES["job"]),
              "segstream-front": dockerfile_env(DOCKERFILES["front"])}
    result = {}
    for name, service in compose()["services"].items():
        base = images.get(service["image"].split(":")[0], {})
        env = {k: interpolate(v) for k, v in (service.get("environment") or {}).items()}
        result[name] = {**base, **env}
    return result


def k8s_environments() -> dict[str, dict[str, str]]:
    """Container -> its environment: the image's ENV, then the container's literal values."""
    job_image, front_image = dockerfile_env(DOCKERFILES["job"]), dockerfile_env(DOCKERFILES["front"])
    result = {}
    for owner, container in k8s_containers():
        base = job_image if container["name"] == "flink-main-container" else front_image
        env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        result[owner] = {**base, **env}
    return result


# --- compose ---------------------------------------------------------------------------------------

def test_compose_file_follows_the_compose_specification():
    schema = json.loads((DOCKER / "schemas" / "compose-spec.json").read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose()), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_compose_references_resolve():
    """What `docker compose config` checks beyond the schema."""
    spec = compose()
    services = spec["services"]
    declared_volumes = set(spec.get("volumes") or {})
    for name, service in services.items():
        for dependency in service.get("depends_on") or {}:
            assert dependency in services, f"{name} depends on unknown service {dependency}"
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0]
            assert source in declared_volumes, f"{name} mounts undeclared volume {source}"
        if "build" in service:
            context = (COMPOSE_FILE.parent / service["build"]["context"]).resolve()
            assert context == PROJECT_ROOT, f"{name}: build context {context} is not the repository root"
            assert (context / service["build"]["dockerfile"]).is_file()
        for check in (service.get("healthcheck") or {}).get("test", [])[:1]:
            assert check in ("CMD", "CMD-SHELL"), f"{name}: healthcheck test must start with CMD or CMD-SHELL"
    # The job's services wait for what they need: topics and tables, then a healthy JobManager.
    assert services["submit"]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert services["submit"]["depends_on"]["jobmanager"]["condition"] == "service_healthy"
    assert services["init"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def kafka_image_properties(environment: dict[str, Any]) -> dict[str, str]:
    """server.properties as the apache/kafka image writes it from KAFKA_* variables
    (`_` -> `.`, `__` -> `_`, `___` -> `-`)."""
    props = {}
    for name, value in environment.items():
        if name.startswith("KAFKA_") and name != "KAFKA_HEAP_OPTS":
            key = name.removeprefix("KAFKA_").lower().replace("___", "-").replace("__", "\0")
            props[key.replace("_", ".").replace("\0", "_")] = str(value).lower() if isinstance(value, bool) \
                else str(value)
    return props


def test_compose_kafka_is_configured_like_the_local_stack():
    kafka = compose()["services"]["kafka"]
    assert image_tag(kafka["image"]) == pom_property("kafka.broker.version")
    compose_props = kafka_image_properties(kafka["environment"])
    local = dict(line.split("=", 1) for line in server_properties(
        Path("/data"), 9092, 9093, StackConfig().transaction_max_timeout_ms).splitlines())
    addresses = {"controller.quorum.bootstrap.servers", "listeners", "advertised.listeners", "log.dirs",
                 "listener.security.protocol.map"}
    for key, value in local.items():
        if key not in addresses:
            assert compose_props.get(key) == value, f"{key}: compose {compose_props.get(key)!r}, local stack {value!r}"
    # KRaft's cluster id: 16 bytes, URL-safe base64 without padding (kafka-storage random-uuid).
    cluster_id = kafka["environment"]["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16 and len(cluster_id) == 22


def flink_properties(environment: dict[str, str]) -> dict[str, str]:
    """FLINK_PROPERTIES as the official image's entrypoint reads it (whitespace removed, split at
    the first colon)."""
    props = {}
    for line in environment.get("FLINK_PROPERTIES", "").splitlines():
        line = re.sub(r"\s", "", line)
        if line:
            key, _, value = line.partition(":")
            props[key] = value
    return props


def test_flink_properties_survive_the_image_entrypoint():
    """The official image's entrypoint deletes every blank of a FLINK_PROPERTIES line: a value with a
    blank inside (two JVM flags, say) would reach Flink glued together."""
    (text,) = {env["FLINK_PROPERTIES"] for env in compose_environments().values() if "FLINK_PROPERTIES" in env}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        assert sep and key.strip() and value.strip(), f"not a `key: value` line: {line!r}"
        assert not re.search(r"\s", value.strip()), f"{key}: a blank inside the value is deleted: {value!r}"


def test_compose_job_settings_agree_with_the_flink_cluster(monkeypatch, tmp_path):
    for name in ("jobmanager", "taskmanager", "submit"):
        environment = compose_environments()[name]
        settings = settings_for(environment, monkeypatch, tmp_path)
        props = flink_properties(environment)
        assert props["execution.checkpointing.dir"] == Path(settings.flink.checkpoint_dir).as_uri(), name
        assert props["python.executable"] == "/opt/python/bin/python3"
        assert settings.path(settings.flink.job_jar).as_posix() == f"{IMAGE_ROOT}lib/segstream-job.jar"
        assert settings.kafka.bootstrap_servers == "kafka:9092"
        assert settings.bigtable.emulator_host == "bigtable:8086"


# --- Kubernetes ------------------------------------------------------------------------------------

CORE_DOCUMENTS = [(f"{name}:{doc['kind']}", doc) for name, doc in k8s_documents()
                  if not doc["apiVersion"].startswith("flink.apache.org/")]  # that one: the operator's CRD


@pytest.mark.parametrize("document", [d for _, d in CORE_DOCUMENTS], ids=[i for i, _ in CORE_DOCUMENTS])
def test_core_manifests_follow_the_kubernetes_schemas(document):
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


@functools.cache
def crd_schema() -> dict[str, Any]:
    # 550 kB of YAML: parsed once, with libyaml when PyYAML has it (seconds in pure Python).
    crd = yaml.load(CRD_FILE.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    return version["schema"]["openAPIV3Schema"]


def pruned_fields(data: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the API server would drop (structural schema pruning): not in `properties`, under no
    x-kubernetes-preserve-unknown-fields or additionalProperties."""
    if schema.get("x-kubernetes-preserve-unknown-fields") or not isinstance(data, (dict, list)):
        return []
    if isinstance(data, list):
        return [f for i, item in enumerate(data) for f in pruned_fields(item, schema.get("items", {}), f"{path}[{i}]")]
    found = []
    properties = schema.get("properties")
    additional = schema.get("additionalProperties")
    for key, value in data.items():
        if properties is not None and key in properties:
            found += pruned_fields(value, properties[key], f"{path}.{key}")
        elif isinstance(additional, dict):
            found += pruned_fields(value, additional, f"{path}.{key}")
        elif properties is not None and not additional:
            found.append(f"{path}.{key}")
    return found


def test_flink_deployment_follows_the_operator_crd():
    deployment = flink_deployment()
    schema = crd_schema()
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(deployment), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    assert pruned_fields(deployment["spec"], schema["properties"]["spec"], "spec") == []
    # The pod template is a core Pod: the same strict check as the other manifests.
    kubernetes_validate.validate(deployment["spec"]["podTemplate"], KUBERNETES_VERSION, strict=True)


def test_flink_deployment_runs_flink_2_3_in_application_mode_with_savepoint_upgrades():
    spec = flink_deployment()["spec"]
    assert spec["flinkVersion"] == "v{}_{}".format(*pinned("apache-flink").split(".")[:2])
    assert spec["flinkVersion"] in crd_schema()["properties"]["spec"]["properties"]["flinkVersion"]["enum"]
    job = spec["job"]
    assert job["upgradeMode"] == "savepoint"
    assert job["entryClass"] == "org.apache.flink.client.python.PythonDriver"
    # The operator refuses savepoint upgrades without both directories (its DefaultValidator).
    assert spec["flinkConfiguration"]["execution.checkpointing.dir"]
    assert spec["flinkConfiguration"]["execution.checkpointing.savepoint-dir"]


def test_crd_is_the_operator_release_one_with_flink_2_3():
    """docker/k8s/crds/README.md: 1.15.0's CRD with the enum fix of apache/flink-kubernetes-operator
    PR #1140 (1.15.0's own CRD stops at v2_2 and the API server refuses v2_3)."""
    text = CRD_FILE.read_text()
    assert text.startswith("# Generated by Fabric8 CRDGenerator")
    readme = (K8S / "crds" / "README.md").read_text()
    digest = hashlib.sha256(CRD_FILE.read_bytes()).hexdigest()
    assert digest in readme, "the CRD changed: update docker/k8s/crds/README.md (provenance and sha256)"


def test_k8s_job_settings_agree_with_the_flink_deployment(monkeypatch, tmp_path):
    spec = flink_deployment()["spec"]
    (environment,) = [env for owner, env in k8s_environments().items() if owner.endswith("flink-main-container")]
    settings = settings_for(environment, monkeypatch, tmp_path)
    config = spec["flinkConfiguration"]
    assert config["execution.checkpointing.dir"] == Path(settings.flink.checkpoint_dir).as_uri()
    # The job sets its parallelism from segstream's config (jobs/flink_env.py): it must be the
    # operator's, or a rescale through spec.job.parallelism would not rescale the job.
    assert settings.flink.parallelism == spec["job"]["parallelism"]
    (configmap_text,) = configmap_files().values()
    assert yaml.safe_load(configmap_text)["flink"]["parallelism"] == spec["job"]["parallelism"]
    assert settings.bigtable.emulator_host == "", "production reads Cloud Bigtable, not an emulator"
    mounts = {m["mountPath"]: m for owner, c in k8s_containers() for m in c.get("volumeMounts", [])}
    for directory in ("execution.checkpointing.dir", "execution.checkpointing.savepoint-dir",
                      "high-availability.storageDir"):
        local = config[directory].removeprefix("file://")
        assert any(local.startswith(m + "/") for m in mounts), f"{directory} {local} is on no mounted volume"


def test_secret_holds_the_bigtable_key_tenant_hashes_and_signing_keys():
    (secret,) = k8s_kind("Secret")
    data = secret["stringData"]
    assert json.loads(data["tenants.json"]) == {"keys": []}  # the KeyStore's file, empty
    assert json.loads(data["bigtable-key.json"])["type"] == "service_account"
    used = {item["key"] for _, spec in pod_specs() for v in spec.get("volumes", [])
            if "secret" in v for item in v["secret"].get("items", [])}
    # and as variables: the signing keys (docs/security.md, "Rule ownership")
    from_env = {e["valueFrom"]["secretKeyRef"]["key"]: e["name"] for _, c in k8s_containers()
                for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
    assert from_env == {"signing-keys": "SEGSTREAM_SIGNING_KEYS"}
    assert used | set(from_env) == set(data)


def test_front_reads_its_keys_and_names_its_reply_topic_after_the_pod(monkeypatch, tmp_path):
    (front,) = [c for owner, c in k8s_containers() if owner == "segstream-front/front"]
    settings = settings_for(k8s_environments()["segstream-front/front"], monkeypatch, tmp_path)
    mounts = [m["mountPath"] for m in front["volumeMounts"]]
    assert str(Path(settings.serving.keys_file).parent) in mounts
    (instance,) = [e for e in front["env"] if e["name"] == "SEGSTREAM_SERVING__INSTANCE_ID"]
    assert instance["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert front["ports"][0]["containerPort"] == settings.serving.port
    (service,) = k8s_kind("Service")
    assert service["spec"]["selector"] == k8s_kind("Deployment")[0]["spec"]["selector"]["matchLabels"]


# --- configuration keys ----------------------------------------------------------------------------

def all_environments() -> dict[str, dict[str, str]]:
    envs = {f"{name} ENV": dockerfile_env(path) for name, path in DOCKERFILES.items()}
    envs.update({f"compose {name}": env for name, env in compose_environments().items()})
    envs.update({f"k8s {name}": env for name, env in k8s_environments().items()})
    return envs


def test_every_segstream_variable_is_a_settings_key_or_read_by_name():
    seen = set()
    for where, environment in all_environments().items():
        for name in environment:
            if not name.startswith("SEGSTREAM_"):
                continue
            seen.add(name)
            if name in NON_SETTINGS_VARIABLES:
                assert name in (PROJECT_ROOT / NON_SETTINGS_VARIABLES[name]).read_text()
            else:
                assert settings_field(name), f"{where}: {name} is no key of segstream's Settings"
    assert len(seen) >= 8  # the walk found the variables


def test_settings_key_rule_rejects_unknown_keys():
    assert settings_field("SEGSTREAM_KAFKA__BOOTSTRAP_SERVERS")
    assert settings_field("SEGSTREAM_SERVING__INSTANCE_ID")
    assert not settings_field("SEGSTREAM_KAFKA__BOOTSTRAP_SERVER")
    assert not settings_field("SEGSTREAM_KAFKA__TOPICS__EVENTS__X")
    assert unknown_keys({"kafka": {"topics": {"event": "e"}}, "flink": {"parallelism": 2}}, Settings) \
        == ["kafka.topics.event"]


@pytest.mark.parametrize("where", sorted(all_environments()))
def test_every_environment_builds_valid_settings(where, monkeypatch, tmp_path):
    settings_for(all_environments()[where], monkeypatch, tmp_path)  # raises on a bad value


def test_configmap_keys_exist_in_settings():
    for path, text in configmap_files().items():
        data = yaml.safe_load(text)
        assert unknown_keys(data, Settings) == [], path
        Settings(**data)


# --- files, commands and jars the deployment names -------------------------------------------------

def copied_into_image(dockerfile: Path) -> set[str]:
    """Repository paths the final image holds under /opt/segstream (COPY sources of the stages)."""
    sources = set()
    for stage in dockerfile_stages(dockerfile):
        for keyword, rest in stage["instructions"]:
            if keyword == "COPY" and "--from" not in rest:
                *items, _ = [a for a in rest.split() if not a.startswith("--")]
                sources.update(item.rstrip("/") for item in items)
    return sources


@pytest.mark.parametrize("dockerfile", DOCKERFILES.values(), ids=DOCKERFILES.keys())
def test_dockerfile_copies_exist_and_are_in_the_build_context(dockerfile):
    ignored = [line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for source in copied_into_image(dockerfile):
        assert (PROJECT_ROOT / source).exists(), f"{dockerfile.name} copies missing {source}"
        assert not any(source == i or source.startswith(i + "/") for i in ignored), \
            f"{dockerfile.name} copies {source}, which .dockerignore leaves out of the context"


def image_paths() -> Iterator[tuple[str, str]]:
    """(where, path) of every /opt/... path that compose and the manifests run or read."""
    for name, service in compose()["services"].items():
        for arg in service.get("command") or []:
            if str(arg).startswith("/opt/"):
                yield f"compose {name}", arg
    for owner, container in k8s_containers():
        for env in container.get("env", []):
            if str(env.get("value", "")).startswith("/opt/"):
                yield owner, env["value"]
    job = flink_deployment()["spec"]["job"]
    for arg in job["args"]:
        if arg.startswith("/opt/"):
            yield "FlinkDeployment args", arg
    yield "FlinkDeployment jarURI", job["jarURI"].removeprefix("local://")
    for name, env in all_environments().items():
        for key, value in env.items():
            if key.startswith("SEGSTREAM_") and value.startswith("/opt/"):
                yield name, value


def test_every_image_path_exists():
    job_sources = copied_into_image(DOCKERFILES["job"])
    flink_version = pinned("apache-flink")
    for where, path in image_paths():
        if path == f"{IMAGE_ROOT}lib/segstream-job.jar":
            # built in the image by the jar stage, as scripts/setup.sh builds it
            assert "<finalName>segstream-job</finalName>" in (PROJECT_ROOT / "jvm/job/pom.xml").read_text()
        elif path.startswith(IMAGE_ROOT):
            relative = path.removeprefix(IMAGE_ROOT)
            assert (PROJECT_ROOT / relative).exists(), f"{where}: {path} is not in the repository"
            assert any(relative == s or relative.startswith(s + "/") for s in job_sources), \
                f"{where}: {path} is not copied into the image"
        elif path.startswith("/opt/python/"):
            assert "--prefix=/opt/python" in DOCKERFILES["job"].read_text(), where
        elif path.startswith("/opt/flink/opt/"):
            # Flink's distribution = the PyFlink wheel's own copy of it (same release)
            name = Path(path).name
            assert name == f"flink-python-{flink_version}.jar", where
            assert (Path(pyflink.__file__).parent / "opt" / name).exists(), f"{where}: Flink has no {name}"
        else:
            raise AssertionError(f"{where}: {path} is not a path the images provide")


def cli_commands() -> set[str]:
    """Every `segstream ...` command path, e.g. 'stack provision'."""
    paths = set()

    def walk(command: Any, prefix: str) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            paths.add(f"{prefix}{name}")
            walk(sub, f"{prefix}{name} ")

    walk(typer.main.get_command(cli_app), "")
    return paths


def test_every_segstream_command_exists():
    commands = [c for s in compose()["services"].values() for c in [s.get("command") or []]]
    commands += [c.get("command") or [] for _, c in k8s_containers()]
    commands += [json.loads(s[1]) for s in dockerfile_stages(DOCKERFILES["front"])[-1]["instructions"]
                 if s[0] == "CMD"]
    used = {" ".join(c[1:]) for c in commands if c and c[0] == "segstream"}
    assert used >= {"serve", "stack provision"}
    assert used <= cli_commands()


def test_submit_script_runs_the_job_by_its_name():
    script = DOCKER / "submit-job.sh"
    assert os.access(script, os.X_OK)
    tree = ast.parse((PROJECT_ROOT / "jobs/user_stats.py").read_text())
    (job_name,) = [n.value.value for n in tree.body if isinstance(n, ast.Assign)
                   and any(getattr(t, "id", None) == "JOB_NAME" for t in n.targets)]
    assert f"JOB_NAME={job_name} " in script.read_text()
    assert "-py /opt/segstream/jobs/user_stats.py" in script.read_text()
    subprocess.run(["bash", "-n", str(script)], check=True)


# --- the Dockerfiles -------------------------------------------------------------------------------

@pytest.mark.parametrize("dockerfile", DOCKERFILES.values(), ids=DOCKERFILES.keys())
def test_bases_are_pinned_and_the_final_user_is_not_root(dockerfile):
    stages = dockerfile_stages(dockerfile)
    names = {s["name"] for s in stages if s["name"]}
    for stage in stages:
        image = stage["from"]
        if image in names:
            continue
        tag = image_tag(image)
        assert ":" in image.split("/")[-1] and tag != "latest" and re.search(r"\d+\.\d+", tag), \
            f"{dockerfile.name}: base {image} is not pinned to a version"
    users = [rest for keyword, rest in stages[-1]["instructions"] if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"{dockerfile.name} runs as root"
    build_tools = re.compile(r"\b(gcc|g\+\+|make|build-essential|maven|mvn|[\w.+-]+-dev)\b")
    for keyword, rest in stages[-1]["instructions"]:
        if keyword == "RUN" and "install" in rest:
            assert not build_tools.search(rest), f"{dockerfile.name}: build tools in the final image: {rest}"
    if len(stages) > 1:
        assert any("--from=" in rest for keyword, rest in stages[-1]["instructions"] if keyword == "COPY")


def test_image_versions_are_the_project_pins():
    flink = pinned("apache-flink")
    assert flink == pom_property("flink.version")
    job = dockerfile_stages(DOCKERFILES["job"])
    assert image_tag(job[-1]["from"]) == f"{flink}-scala_2.12-java17"
    assert re.search(r"ARG PYTHON_VERSION=3\.11\.\d+\n", DOCKERFILES["job"].read_text())
    assert image_tag(dockerfile_stages(DOCKERFILES["front"])[-1]["from"]).startswith("3.11.")
    assert pyproject()["project"]["requires-python"] == ">=3.11,<3.12"
    assert "-pl job -am" in DOCKERFILES["job"].read_text()


def constraints() -> dict[str, str]:
    pins = {}
    for line in (DOCKER / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert canonicalize_name(name) not in pins, f"{name} twice in docker/constraints.txt"
            pins[canonicalize_name(name)] = version
    return pins


def test_constraints_satisfy_the_project_dependencies():
    pins = constraints()
    for line in pyproject()["project"]["dependencies"]:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in pins, f"docker/constraints.txt does not pin {req.name}"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req.name}=={pins[name]} is not {req}"


def front_requirements() -> list[Requirement]:
    return [Requirement(line) for line in (DOCKER / "front-requirements.txt").read_text().splitlines()
            if line and not line.startswith("#")]


def test_front_requirements_are_the_project_dependencies_without_pyflink():
    project = {canonicalize_name(Requirement(r).name): str(Requirement(r))
               for r in pyproject()["project"]["dependencies"]}
    front = {canonicalize_name(r.name): str(r) for r in front_requirements()}
    assert set(project) - set(front) == {"apache-flink", "datasketches"}
    for name, spec in front.items():
        assert project[name] == spec, f"{name}: front {spec}, pyproject {project[name]}"


def test_front_and_provisioning_import_without_pyflink():
    """The front image has no PyFlink or DataSketches: importing what `segstream serve` and
    `segstream stack provision` run, with those blocked, must work."""
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"pyflink", "datasketches", "apache_beam"}:
            raise ImportError(f"{name} is not in the front image")
sys.meta_path.insert(0, Block())
import segstream.cli, serving.server, serving.app, serving.front, serving.keys, segstream.stack
from serving.app import create_app
from segstream.stack import provision
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
