"""Static checks of the deployment files: Dockerfile, compose and Kubernetes manifests.

No container engine or cluster runs in CI, so these files are never executed there. These
tests check what would break them when they are: YAML that does not parse, settings or CLI
arguments vitalflow does not know, images that float or drift from the versions the test
suite ran against, probes on routes the API does not have, references that do not resolve,
more than one flow, a recovery store on ephemeral storage, secrets in plain text.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import shlex
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from fastapi import FastAPI
from packaging.specifiers import SpecifierSet
from starlette.routing import Match

from api.app import create_app
from flows.cli import build_parser
from flows.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE_DIR = REPO / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
K8S_DIR = REPO / "deploy" / "kubernetes"
KUSTOMIZATION_DIRS = (K8S_DIR, K8S_DIR / "demo")
YAML_FILES = sorted([*COMPOSE_DIR.rglob("*.yaml"), *K8S_DIR.rglob("*.yaml")])
K8S_FILES = sorted(p for p in K8S_DIR.rglob("*.yaml") if p.name != "kustomization.yaml")

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION: str = PYPROJECT["project"]["version"]
APP_IMAGE = "vitalflow"
# Where the image runs as (Dockerfile USER); pods must run as the same ids.
APP_UID = 10001

SETTINGS_ENV_NAMES = frozenset(
    Settings.model_config["env_prefix"] + name.upper() for name in Settings.model_fields
)
VITALFLOW_NAME = re.compile(r"\bVITALFLOW_[A-Z0-9_]+")
FULL_VERSION = re.compile(r"^v?\d+\.\d+\.\d+")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}


# ---------------------------------------------------------------------------------------
# Reading the files


def load_documents(path: Path) -> list[dict[str, Any]]:
    with path.open() as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str

    def json_list(self) -> list[str]:
        value = json.loads(self.arguments)
        assert isinstance(value, list), f"{self.keyword} should use the JSON (exec) form"
        return [str(v) for v in value]


def dockerfile_instructions() -> list[Instruction]:
    """The instructions, continuation lines joined and comments dropped, as Docker does."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line:
            keyword, _, arguments = line.partition(" ")
            instructions.append(Instruction(keyword.upper(), arguments.strip()))
    return instructions


def dockerfile(keyword: str) -> list[Instruction]:
    return [i for i in dockerfile_instructions() if i.keyword == keyword]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in dockerfile("ENV"):
        for item in shlex.split(instruction.arguments):
            name, sep, value = item.partition("=")
            assert sep, f"use ENV NAME=value, not {instruction.arguments!r}"
            env[name] = value
    return env


def dockerfile_base_images() -> list[str]:
    args = {}
    for instruction in dockerfile_instructions():
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG":
            name, _, default = instruction.arguments.partition("=")
            args[name] = default
    images = []
    stages = set()
    for instruction in dockerfile("FROM"):
        words = instruction.arguments.split()
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], words[0])
        if image not in stages:
            images.append(image)
        if len(words) == 3 and words[1].upper() == "AS":
            stages.add(words[2])
    return images


def compose() -> dict[str, Any]:
    documents = load_documents(COMPOSE_FILE)
    assert len(documents) == 1
    return documents[0]


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return services


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(item.partition("=")[::2] for item in environment)
    return {name: str(value) for name, value in environment.items()}


def k8s_objects(paths: Sequence[Path] = K8S_FILES) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in paths:
        for document in load_documents(path):
            yield path, document


def kustomized_files(directory: Path) -> list[Path]:
    """The manifest files a kustomization applies, following bases it includes."""
    kustomization = load_documents(directory / "kustomization.yaml")[0]
    files: list[Path] = []
    for resource in kustomization["resources"]:
        path = (directory / resource).resolve()
        files.extend(kustomized_files(path) if path.is_dir() else [path])
    return files


def pod_specs(paths: Sequence[Path] = K8S_FILES) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, obj in k8s_objects(paths):
        if obj["kind"] in WORKLOAD_KINDS:
            yield f"{path.name}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]


def k8s_containers(
    paths: Sequence[Path] = K8S_FILES,
) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for where, spec in pod_specs(paths):
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            yield f"{where}/{container['name']}", spec, container


def configmap_data() -> dict[str, Any]:
    configmaps = [o for _, o in k8s_objects() if o["kind"] == "ConfigMap"]
    assert len(configmaps) == 1
    data: dict[str, Any] = configmaps[0]["data"]
    return data


def image_name_and_tag(image: str) -> tuple[str, str | None]:
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:  # no tag, only a registry port
        return image, None
    return name, tag


def is_app_image(image: str) -> bool:
    return image_name_and_tag(image)[0].rsplit("/", 1)[-1] == APP_IMAGE


def parse_cli(argv: list[str], where: str, *, help_is_fine: bool = False) -> None:
    """Parse `argv` with vitalflow's real parser (never runs a command)."""
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        if not (help_is_fine and exc.code == 0):
            pytest.fail(f"{where}: `vitalflow {shlex.join(argv)}` is rejected by the CLI")


def recovery_dir_of(*environments: dict[str, Any]) -> PurePosixPath:
    """VITALFLOW_RECOVERY_DIR as the first environment that sets it (the image's last)."""
    name = "VITALFLOW_RECOVERY_DIR"
    value = next((e[name] for e in [*environments, dockerfile_env()] if e.get(name)), None)
    assert value, f"{name} is set nowhere"
    return PurePosixPath(str(value))


def is_under(path: PurePosixPath, mount: str) -> bool:
    return path == PurePosixPath(mount) or PurePosixPath(mount) in path.parents


@pytest.fixture(scope="module")
def api_app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    # The embedded event log keeps construction free of sockets; the app is never started.
    events = tmp_path_factory.mktemp("api") / "events.db"
    return create_app(Settings(auth="off", event_log_url=f"sqlite:///{events}"))


def serves_get(app: FastAPI, path: str) -> bool:
    """True when one of `app.routes` takes GET `path` (routers may be nested, so ask them)."""
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "path_params": {}}
    return any(route.matches(dict(scope))[0] == Match.FULL for route in app.routes)


# ---------------------------------------------------------------------------------------
# Every file


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_yaml_file_parses(path: Path) -> None:
    documents = load_documents(path)
    assert documents, f"{path} is empty"
    if path.is_relative_to(K8S_DIR):
        for document in documents:
            assert {"apiVersion", "kind"} <= document.keys(), path
            if document["kind"] != "Kustomization":
                assert document["metadata"]["name"], path


def test_dockerfile_has_the_instructions_the_deployments_rely_on() -> None:
    keywords = [i.keyword for i in dockerfile_instructions()]
    assert keywords[0] in {"FROM", "ARG"}
    for keyword in ("FROM", "USER", "ENTRYPOINT", "VOLUME", "ENV"):
        assert keyword in keywords


def test_every_vitalflow_variable_named_is_a_setting() -> None:
    files = [DOCKERFILE, *YAML_FILES]
    unknown = {
        f"{path.relative_to(REPO)}: {name}"
        for path in files
        for name in VITALFLOW_NAME.findall(path.read_text())
        if name not in SETTINGS_ENV_NAMES
    }
    assert not unknown, "not fields of flows.settings.Settings: " + ", ".join(sorted(unknown))


# ---------------------------------------------------------------------------------------
# Images


def all_images() -> list[tuple[str, str]]:
    images = [("Dockerfile", image) for image in dockerfile_base_images()]
    images += [(f"compose:{n}", s["image"]) for n, s in compose_services().items()]
    images += [(where, c["image"]) for where, _, c in k8s_containers()]
    return images


@pytest.mark.parametrize(("where", "image"), all_images())
def test_images_are_pinned_to_explicit_versions(where: str, image: str) -> None:
    _, tag = image_name_and_tag(image)
    assert tag is not None, f"{where}: {image} has no tag"
    assert tag != "latest", f"{where}: {image}"
    if is_app_image(image):
        assert tag == VERSION, f"{where}: {image} is not the version in pyproject.toml"
    else:
        assert FULL_VERSION.match(tag), f"{where}: {image} is not pinned to a patch release"


def test_kustomizations_tag_the_image_with_the_package_version() -> None:
    for directory in KUSTOMIZATION_DIRS:
        kustomization = load_documents(directory / "kustomization.yaml")[0]
        tags = {i["name"]: str(i.get("newTag")) for i in kustomization.get("images", [])}
        assert tags.get(APP_IMAGE) == VERSION, directory


def test_kafka_image_is_the_version_the_tests_ran_against() -> None:
    pom = ET.parse(REPO / "deploy" / "kafka" / "pom.xml").getroot()
    version = pom.findtext(
        "{http://maven.apache.org/POM/4.0.0}properties/"
        "{http://maven.apache.org/POM/4.0.0}kafka.version"
    )
    assert version
    assert compose_services()["kafka"]["image"] == f"apache/kafka:{version}"


def test_mongo_image_is_a_pinned_mongodb_6_or_later() -> None:
    # The tests run on mongo-java-server; production runs MongoDB itself (DESIGN.md: only
    # what MongoDB 6+ and the tested server share).
    found = re.fullmatch(r"mongo:(\d+)\.(\d+)\.(\d+)", compose_services()["mongo"]["image"])
    assert found
    assert int(found[1]) >= 6


def test_mosquitto_image_is_a_2_0_release() -> None:
    _, tag = image_name_and_tag(compose_services()["mosquitto"]["image"])
    assert tag is not None
    assert re.fullmatch(r"2\.0\.\d+", tag)


# ---------------------------------------------------------------------------------------
# The Dockerfile


def test_image_is_python_3_11_slim_within_requires_python() -> None:
    final = dockerfile_base_images()[-1]
    name, tag = image_name_and_tag(final)
    assert name == "python"
    assert tag is not None
    assert "slim" in tag
    version = re.match(r"\d+\.\d+\.\d+", tag)
    assert version, f"{final} is not pinned to a patch release"
    assert version[0].startswith("3.11."), "the Python the tests run on"
    assert SpecifierSet(PYPROJECT["project"]["requires-python"]).contains(version[0])


def test_image_installs_the_package_with_the_pinned_constraints_and_no_extras() -> None:
    installs = [i.arguments for i in dockerfile("RUN") if "pip install" in i.arguments]
    assert len(installs) == 1
    words = installs[0].split()
    assert "-c" in words
    assert words[words.index("-c") + 1] == "constraints.txt"
    assert "." in words, "the package itself, without extras such as .[dev]"
    assert not any(w.startswith((".[", "-e")) for w in words)


def test_image_copies_every_package_and_the_files_the_build_needs() -> None:
    copied = {
        PurePosixPath(source).as_posix().strip("/")
        for i in dockerfile("COPY")
        if "--from=" not in i.arguments
        for source in [w for w in i.arguments.split() if not w.startswith("--")][:-1]
    }
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.split(".")[0] for p in include}
    needed = {*packages, "pyproject.toml", "constraints.txt", PYPROJECT["project"]["readme"]}
    assert needed <= copied, f"not copied into the image: {sorted(needed - copied)}"


def dockerignored(path: str, patterns: list[str]) -> bool:
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        bare = pattern.strip("/").removeprefix("**/")
        for prefix in prefixes:
            if fnmatch.fnmatch(prefix, bare) or (
                pattern.startswith("**/") and fnmatch.fnmatch(PurePosixPath(prefix).name, bare)
            ):
                return True
    return False


def test_dockerignore_keeps_local_state_out_and_the_sources_in() -> None:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "keep it to plain exclusions"
    for path in (".git", ".venv", "deploy/local/.run", "deploy/local/.cache", ".env"):
        assert dockerignored(path, patterns), f"{path} would be sent to the build"
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.split(".")[0] for p in include}
    sources = [REPO / "pyproject.toml", REPO / "constraints.txt", REPO / "README.md"]
    for package in packages:
        sources += [
            p for p in (REPO / package).rglob("*") if p.is_file() and "__pycache__" not in p.parts
        ]
    excluded = [
        str(p.relative_to(REPO))
        for p in sources
        if dockerignored(p.relative_to(REPO).as_posix(), patterns)
    ]
    assert not excluded, f".dockerignore drops files the image needs: {excluded}"


def test_image_runs_vitalflow_as_a_non_root_user() -> None:
    user = dockerfile("USER")[-1].arguments
    uid, _, gid = user.partition(":")
    assert uid == str(APP_UID), "numeric, so Kubernetes can verify runAsNonRoot"
    assert gid == str(APP_UID)
    entrypoint = dockerfile("ENTRYPOINT")[-1].json_list()
    assert entrypoint[-1] == APP_IMAGE
    for instruction in dockerfile("CMD"):
        parse_cli(instruction.json_list(), "Dockerfile CMD", help_is_fine=True)


def test_image_keeps_the_recovery_dir_on_a_volume() -> None:
    recovery = PurePosixPath(dockerfile_env()["VITALFLOW_RECOVERY_DIR"])
    volumes = [v for i in dockerfile("VOLUME") for v in i.json_list()]
    assert any(is_under(recovery, v) for v in volumes), (recovery, volumes)


# ---------------------------------------------------------------------------------------
# Compose


def app_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose_services().items() if is_app_image(s["image"])}


def test_compose_commands_parse_with_the_cli() -> None:
    services = app_services()
    assert {"flow", "api", "seed", "simulator"} <= services.keys()
    for name, service in services.items():
        command = service["command"]
        argv = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
        parse_cli(argv, f"compose service {name}")
    assert services["flow"]["command"][0] == "run"
    assert services["api"]["command"][0] == "api"
    assert services["seed"]["command"][0] == "seed"
    assert services["simulator"]["command"][0] == "simulate"


def test_compose_services_reach_each_other_by_name() -> None:
    services = compose_services()
    kafka_env = compose_env(services["kafka"])
    advertised = urlsplit(kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")[0]).netloc
    mqtt_listener = mosquitto_options(COMPOSE_DIR / "mosquitto.conf")["listener"][0]
    for name, service in app_services().items():
        env = compose_env(service)
        mqtt = urlsplit(env["VITALFLOW_MQTT_URL"])
        assert mqtt.hostname == "mosquitto", name
        assert str(mqtt.port) == mqtt_listener.split()[0], name
        mongo = urlsplit(env["VITALFLOW_MONGO_URL"])
        assert mongo.hostname == "mongo", name
        assert env["VITALFLOW_KAFKA_BOOTSTRAP"] == advertised, name


def test_compose_waits_for_dependencies_that_have_a_healthcheck() -> None:
    services = compose_services()
    for name, service in services.items():
        for target, condition in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
    flow_waits = services["flow"]["depends_on"]
    for target in ("mosquitto", "kafka", "mongo"):
        assert flow_waits[target]["condition"] == "service_healthy"


def compose_flows() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in app_services().items() if s["command"][0] == "run"}


def test_compose_runs_the_flow_as_a_two_process_cluster_each_on_its_own_volume() -> None:
    flows = compose_flows()
    assert len(flows) == 2, flows.keys()
    named = compose()["volumes"].keys()
    sources: set[str] = set()
    ids: set[int] = set()
    for name, flow in flows.items():
        assert flow["restart"] == "unless-stopped"
        assert flow.get("deploy", {}).get("replicas", 1) == 1, f"{name}: a process is one service"
        env = compose_env(flow)
        addresses = env["VITALFLOW_ADDRESSES"].split(";")
        process_id = int(env["VITALFLOW_PROCESS_ID"])
        assert len(addresses) == len(flows)
        # Every process is reached at its own entry, by its service's host name.
        assert addresses[process_id].split(":")[0] == flow["hostname"] == name
        ids.add(process_id)
        assert int(env["VITALFLOW_MQTT_PARTITIONS"]) >= len(flows)
        assert int(env["VITALFLOW_RECOVERY_PARTITIONS"]) >= len(flows)
        recovery = recovery_dir_of(env)
        mounts = [v.split(":") for v in flow["volumes"]]
        mounted = [src for src, dst, *_ in mounts if src in named and is_under(recovery, dst)]
        assert mounted, mounts
        sources.update(mounted)
        assert "/healthz" in " ".join(flow["healthcheck"]["test"])
        assert env["VITALFLOW_METRICS_PORT"] in " ".join(flow["healthcheck"]["test"])
    assert ids == set(range(len(flows)))
    assert len(sources) == len(flows), "each process needs a volume of its own"
    same = {k: v for k, v in compose_env(flows["flow"]).items() if k != "VITALFLOW_PROCESS_ID"}
    for flow in flows.values():
        assert {
            k: v for k, v in compose_env(flow).items() if k != "VITALFLOW_PROCESS_ID"
        } == same, "the processes of one cluster differ only by their id"


def test_compose_api_listens_on_all_interfaces_and_checks_a_real_route(
    api_app: FastAPI,
) -> None:
    api = compose_services()["api"]
    env = compose_env(api)
    assert env["VITALFLOW_API_HOST"] == "0.0.0.0"
    port = env["VITALFLOW_API_PORT"]
    assert any(str(p).endswith(f":{port}") for p in api["ports"]), api["ports"]
    url = re.search(r"http://[^'\"\s]+", " ".join(api["healthcheck"]["test"]))
    assert url
    health = urlsplit(url[0])
    assert str(health.port) == port
    assert serves_get(api_app, health.path), health.path


def test_compose_demo_services_are_behind_the_demo_profile() -> None:
    services = compose_services()
    for name in ("seed", "simulator"):
        assert services[name]["profiles"] == ["demo"], name
    for name in ("mosquitto", "kafka", "mongo", "flow", "api"):
        assert "profiles" not in services[name], name


def test_compose_bind_mounts_exist() -> None:
    named = compose()["volumes"].keys()
    for name, service in compose_services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source not in named:
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source}"


def scalars(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from scalars(item)
    elif isinstance(value, list):
        for item in value:
            yield from scalars(item)
    elif value is not None:
        yield str(value)


def test_compose_interpolations_are_well_formed() -> None:
    # Compose interpolates every value: `$$` is a literal dollar; variables are written
    # `${NAME}`, `${NAME:-default}` or `${NAME:?message}`. A bare `$NAME` is refused too: in
    # a command (`$SYS/#`) it is a shell or MQTT `$` that compose would silently blank.
    variable = re.compile(r"\$\{[A-Za-z_]\w*(?:(?::?[-?+])[^}]*)?\}")
    for value in scalars(compose()):
        leftover = variable.sub("", value.replace("$$", ""))
        assert "$" not in leftover, f"compose would misread {value!r}"


def test_kafka_cluster_id_is_a_base64_uuid() -> None:
    cluster_id = compose_env(compose_services()["kafka"])["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
    assert not cluster_id.startswith("-")


def mosquitto_options(path: Path) -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            options.setdefault(key, []).append(value.strip())
    return options


def test_compose_mosquitto_keeps_the_limits_of_the_tested_broker() -> None:
    tested = mosquitto_options(REPO / "deploy" / "mosquitto" / "mosquitto.conf")
    composed = mosquitto_options(COMPOSE_DIR / "mosquitto.conf")
    for key in ("max_inflight_messages", "max_queued_messages", "max_queued_bytes"):
        assert composed[key] == tested[key], key
    assert composed["persistence"] == ["true"]
    assert composed["persistence_location"] == ["/mosquitto/data/"]
    assert composed["listener"] == ["1883 0.0.0.0"]
    mounts = compose_services()["mosquitto"]["volumes"]
    assert "./mosquitto.conf:/mosquitto/config/mosquitto.conf:ro" in mounts
    assert any(m.endswith(":/mosquitto/data") for m in mounts), "persistence on a volume"


def test_compose_has_no_plaintext_secret() -> None:
    services = compose_services()
    for name, service in services.items():
        env = compose_env(service)
        for key, value in env.items():
            assert not urlsplit(value).password, f"{name}: {key} carries a password"
        if name != "api":
            assert "VITALFLOW_JWT_SECRET" not in env, name
    secret = compose_env(services["api"])["VITALFLOW_JWT_SECRET"]
    # Required from the environment, no default: `${NAME:?message}`.
    assert re.fullmatch(r"\$\{VITALFLOW_JWT_SECRET:\?[^}]+\}", secret), secret
    assert compose_env(services["api"])["VITALFLOW_AUTH"] == "jwt"


# ---------------------------------------------------------------------------------------
# Kubernetes


@pytest.mark.parametrize("directory", KUSTOMIZATION_DIRS, ids=lambda p: p.name)
def test_kustomization_lists_every_manifest_and_no_example(directory: Path) -> None:
    kustomization = load_documents(directory / "kustomization.yaml")[0]
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), "listed twice"
    for resource in listed:
        assert (directory / resource).exists(), resource
        if (directory / resource).is_dir():
            assert (directory / resource / "kustomization.yaml").is_file(), resource
    files = {p.name for p in directory.glob("*.yaml") if p.name != "kustomization.yaml"}
    examples = {name for name in files if name.endswith(".example.yaml")}
    listed_files = {r for r in listed if (directory / r).is_file()}
    assert listed_files == files - examples
    assert not listed_files & examples, "an example must never be applied"


def test_kubernetes_objects_live_in_the_vitalflow_namespace() -> None:
    for path, obj in k8s_objects():
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "vitalflow", path.name


def test_applied_manifests_hold_no_secret() -> None:
    for directory in KUSTOMIZATION_DIRS:
        for path, obj in k8s_objects(kustomized_files(directory)):
            assert obj["kind"] != "Secret", f"{path.name}: Secrets are created, not applied"
    for key, value in configmap_data().items():
        assert key not in {"VITALFLOW_JWT_SECRET"}, key
        assert not urlsplit(str(value)).password, f"{key} carries a password"
    for where, _, container in k8s_containers():
        for variable in container.get("env", []):
            assert variable["name"] != "VITALFLOW_JWT_SECRET" or "valueFrom" in variable, where


def test_environment_values_are_strings() -> None:
    # kubectl rejects a ConfigMap value or an env value that YAML reads as a number.
    for key, value in configmap_data().items():
        assert isinstance(value, str), key
    for where, _, container in k8s_containers():
        for variable in container.get("env", []):
            assert "valueFrom" in variable or isinstance(variable.get("value"), str), where


def test_kubernetes_args_parse_with_the_cli() -> None:
    seen = 0
    for where, _, container in k8s_containers():
        if is_app_image(container["image"]):
            command = container.get("command")
            assert command is None or command[0] == APP_IMAGE, where
            argv = [*(command or [APP_IMAGE])[1:], *container.get("args", [])]
            parse_cli([str(a) for a in argv], where)
            seen += 1
    assert seen >= 4


def test_references_between_kubernetes_objects_resolve() -> None:
    objects = [obj for _, obj in k8s_objects()]
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    workloads = [o for o in objects if o["kind"] in WORKLOAD_KINDS]
    for workload in workloads:
        where = f"{workload['kind']} {workload['metadata']['name']}"
        spec = workload["spec"]["template"]["spec"]
        volumes = {v["name"] for v in spec.get("volumes", [])} | {
            t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])
        }
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert ("ConfigMap", source["configMapRef"]["name"]) in names, where
                if "secretRef" in source:
                    # Secrets are created by hand, not applied; the example documents each.
                    assert ("Secret", source["secretRef"]["name"]) in names, where
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{where}: no volume {mount['name']}"
        selector = workload["spec"].get("selector", {}).get("matchLabels", {})
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), f"{where}: selector misses its pods"
        if workload["kind"] == "StatefulSet":
            assert ("Service", workload["spec"]["serviceName"]) in names, where
    for obj in objects:
        if obj["kind"] in {"Service", "PodDisruptionBudget"}:
            selector = obj["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            assert any(
                selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
                for w in workloads
            ), f"{obj['kind']} {obj['metadata']['name']} selects no pod"


def api_deployment() -> dict[str, Any]:
    found = [
        o
        for _, o in k8s_objects()
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "vitalflow-api"
    ]
    assert len(found) == 1
    return found[0]


def test_api_deployment_probes_real_routes_on_its_port(api_app: FastAPI) -> None:
    deployment = api_deployment()
    assert deployment["spec"]["replicas"] >= 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["api"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert str(ports["http"]) == configmap_data()["VITALFLOW_API_PORT"]
    assert configmap_data()["VITALFLOW_API_HOST"] == "0.0.0.0"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = container[probe]["httpGet"]
        assert serves_get(api_app, get["path"]), f"{probe}: no GET {get['path']} in the API"
        assert get["port"] in ports or get["port"] in ports.values(), probe
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    service = next(
        o
        for _, o in k8s_objects()
        if (o["kind"], o["metadata"]["name"]) == ("Service", "vitalflow-api")
    )
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in ports or port["targetPort"] in ports.values(), port


def test_flow_runs_as_one_bytewax_cluster_with_a_recovery_volume_per_pod() -> None:
    flows = [
        o
        for _, o in k8s_objects()
        if o["kind"] in WORKLOAD_KINDS
        and any(
            c.get("args", [None])[0] == "run" for c in o["spec"]["template"]["spec"]["containers"]
        )
    ]
    assert len(flows) == 1, "exactly one workload runs the dataflow"
    flow = flows[0]
    assert flow["kind"] == "StatefulSet"
    # Every process must join before the cluster runs: no ordered start.
    assert flow["spec"]["podManagementPolicy"] == "Parallel"
    config = configmap_data()
    addresses = config["VITALFLOW_ADDRESSES"].split(";")
    replicas = flow["spec"]["replicas"]
    assert len(addresses) == replicas >= 2
    name, service = flow["metadata"]["name"], flow["spec"]["serviceName"]
    for ordinal, address in enumerate(addresses):
        host = address.split(":")[0]
        assert host.split(".")[:3] == [f"{name}-{ordinal}", service, "vitalflow"], address
        assert host.endswith(".svc.cluster.local") or host.count(".") == 2, address
    assert int(config["VITALFLOW_MQTT_PARTITIONS"]) >= replicas
    assert int(config["VITALFLOW_RECOVERY_PARTITIONS"]) >= replicas
    headless = next(
        o for _, o in k8s_objects() if (o["kind"], o["metadata"]["name"]) == ("Service", service)
    )
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    spec = flow["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] >= 30
    container = spec["containers"][0]
    env = {v["name"]: v for v in container.get("env", [])}
    assert env["VITALFLOW_PROCESS_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert all(a.split(":")[1] == str(ports["cluster"]) for a in addresses)
    assert str(ports["metrics"]) == config["VITALFLOW_METRICS_PORT"]
    liveness = container["livenessProbe"]["httpGet"]
    assert liveness["path"] == "/healthz"
    assert liveness["port"] in ports or liveness["port"] in ports.values()
    recovery = recovery_dir_of({}, config)
    claims = {t["metadata"]["name"] for t in flow["spec"]["volumeClaimTemplates"]}
    assert any(
        m["name"] in claims and is_under(recovery, m["mountPath"])
        for m in container["volumeMounts"]
    ), f"{recovery} is not on a PersistentVolumeClaim (one per pod)"
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    # fsGroup makes the claim writable for the image's user.
    assert spec["securityContext"]["fsGroup"] == APP_UID


POD_SPECS = list(pod_specs(sorted(K8S_DIR.rglob("*.yaml"))))


@pytest.mark.parametrize(("where", "spec"), POD_SPECS, ids=[where for where, _ in POD_SPECS])
def test_pods_meet_the_restricted_pod_security_standard(where: str, spec: dict[str, Any]) -> None:
    pod = spec.get("securityContext", {})
    assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
    assert not spec.get("hostNetwork") and not spec.get("hostPID"), where
    for container in spec["containers"]:
        context = {**pod, **container.get("securityContext", {})}
        assert context.get("runAsNonRoot") is True, where
        assert context.get("runAsUser") == APP_UID, where
        assert context.get("allowPrivilegeEscalation") is False, where
        assert "ALL" in context.get("capabilities", {}).get("drop", []), where
        assert not context.get("privileged"), where
