"""docker-compose.yml, Dockerfile and the secrets script, checked without a Docker engine.

tests/compose-spec.json is the Compose Specification JSON schema, schema/compose-spec.json of
the public compose-spec/compose-spec repository at commit
00655e2222608fa6eaecdf12ac5195889ca2244a, stored unchanged.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from pydantic import BaseModel

from collector.config import IngestorConfig, SiteConfig
from scripts import healthcheck, init_env
from tests.support import servers
from tests.support.sim_helpers import socket_meter, tcp_bus, write_site

REPO = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
ENV_EXAMPLE = (REPO / ".env.example").read_text()
DATABASE_PORTS = {"8086", "8088"}
SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET", "KEY")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?][^}]*)?\}")


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def test_validates_against_the_compose_specification() -> None:
    schema = json.loads((REPO / "tests" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(COMPOSE, schema, cls=jsonschema.Draft7Validator)


def test_the_schema_catches_a_broken_file() -> None:
    schema = json.loads((REPO / "tests" / "compose-spec.json").read_text())
    broken = {"services": {"x": {"image": "a:1", "depends_on": {"y": {"condition": "up"}}}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft7Validator)


def test_expected_services() -> None:
    assert set(SERVICES) == {
        "mosquitto",
        "influxdb",
        "grafana",
        "collector",
        "ingestor",
        "simulator",
        "desk",
    }
    assert SERVICES["simulator"]["profiles"] == ["simulator"]
    assert "COMPOSE_PROFILES=simulator" in ENV_EXAMPLE.splitlines()


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_image_tags_are_pinned(name: str) -> None:
    image = SERVICES[name]["image"]
    repo, _, tag = image.rpartition(":")
    assert repo and tag != "latest" and re.fullmatch(r"\d+\.\d+\.\d+", tag), image
    expected_major = {"mosquitto": "eclipse-mosquitto:2.", "influxdb": "influxdb:2."}
    if name in expected_major:
        assert image.startswith(expected_major[name])


def test_dockerfile_is_pinned_non_root_with_healthcheck() -> None:
    lines = [
        line.strip()
        for line in (REPO / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert re.fullmatch(r"FROM python:3\.11\.\d+-slim(-\w+)?", lines[0]), lines[0]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any(line.startswith("HEALTHCHECK") for line in lines)
    for service in ("collector", "ingestor", "simulator"):
        assert SERVICES[service]["build"] == "."


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_healthcheck_and_a_restart_policy(name: str) -> None:
    service = SERVICES[name]
    check = service["healthcheck"]
    assert check["test"] and check["test"][0] in ("CMD", "CMD-SHELL")
    assert not check.get("disable")
    assert service["restart"] in ("unless-stopped", "always")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_dependencies_wait_for_healthy(name: str) -> None:
    for dependency, spec in SERVICES[name].get("depends_on", {}).items():
        assert dependency in SERVICES
        assert spec["condition"] == "service_healthy", (name, dependency)
    if name in ("collector", "ingestor"):
        assert "mosquitto" in SERVICES[name]["depends_on"]


def test_no_default_or_literal_secret() -> None:
    for name, service in SERVICES.items():
        for key, value in environment(service).items():
            if any(word in key for word in SECRET_WORDS):
                refs = _VAR.findall(value)
                assert refs, f"{name}.{key}: a literal secret"
                # Either required (`:?`), or empty when unset (optional channels).
                # Or an optional variable falling back on a required one (narrower tokens).
                assert re.fullmatch(r"\$\{\w+(:\?[^}]*|:-)?\}", value) or re.fullmatch(
                    r"\$\{\w+:-\$\{\w+:\?[^}]*\}\}", value
                ), f"{name}.{key}: {value}"


def test_every_variable_is_documented_in_env_example() -> None:
    documented = set(init_env.parse_env(ENV_EXAMPLE))
    used = set(re.findall(r"\$\{(\w+)", (REPO / "docker-compose.yml").read_text()))  # nested too
    used -= {"SYS"}  # `$$SYS` in a healthcheck is mosquitto's topic, not a variable
    assert used - documented == set()
    for name in init_env.GENERATED:
        assert f"{name}=" in ENV_EXAMPLE.splitlines(), name


def published(service: dict[str, Any]) -> list[str]:
    return [str(port).rsplit(":", 1)[-1] for port in service.get("ports", [])]


def test_only_grafana_mqtt_the_desk_and_ocpp_are_published() -> None:
    assert "ports" not in SERVICES["influxdb"]
    for name, service in SERVICES.items():
        assert not DATABASE_PORTS & set(published(service)), name
    assert published(SERVICES["grafana"]) == ["3000"]
    assert published(SERVICES["mosquitto"]) == ["1883"]
    assert published(SERVICES["desk"]) == ["8080"]
    assert published(SERVICES["collector"]) == ["9000"]
    assert {n for n, service in SERVICES.items() if published(service)} == {
        "grafana",
        "mosquitto",
        "desk",
        "collector",
    }
    grafana = environment(SERVICES["grafana"])
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD")


def test_named_volumes_for_all_state() -> None:
    declared = set(COMPOSE["volumes"])
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith("."):
                assert source in declared, (name, source)
    assert any(v.startswith("influxdb-data:") for v in SERVICES["influxdb"]["volumes"])
    assert any(v.startswith("mosquitto-data:") for v in SERVICES["mosquitto"]["volumes"])


def test_influxdb_is_initialised_with_the_influxql_mapping() -> None:
    env = environment(SERVICES["influxdb"])
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert "./influxdb/init:/docker-entrypoint-initdb.d:ro" in SERVICES["influxdb"]["volumes"]
    script = (REPO / "influxdb" / "init" / "10-dbrp.sh").read_text()
    assert "influx v1 dbrp create" in script and "--rp autogen" in script


# --- scripts/init_env.py: .env, site file and mosquitto password file --------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "config" / "examples").mkdir(parents=True)
    example = REPO / "config" / "examples" / "hotel-vda.yaml"
    (tmp_path / "config" / "examples" / "hotel-vda.yaml").write_text(example.read_text())
    (tmp_path / ".env.example").write_text(ENV_EXAMPLE)
    return tmp_path


def run_init(root: Path) -> int:
    return init_env.main(["--root", str(root)])


def test_first_run_creates_secrets_site_and_password_file(root: Path) -> None:
    assert run_init(root) == 0
    env = init_env.parse_env((root / ".env").read_text())
    secrets = [env[name] for name in init_env.GENERATED]
    assert all(re.fullmatch(r"[0-9a-f]{48}", s) for s in secrets)
    assert len(set(secrets)) == len(secrets)
    assert (root / ".env").stat().st_mode & 0o077 == 0
    assert env["IRVE_SITE_ID"] == "hotel-vda"
    assert env["IRVE_ALERT_NTFY_TOKEN"] == ""  # optional channels stay off
    site = (root / "config" / "site.yaml").read_text()
    assert "host: simulator" in site and "127.0.0.1" not in site
    passwd = root / "mosquitto" / "passwd"
    users = [line.split(":")[0] for line in passwd.read_text().split()]
    assert users == ["hotel-vda", "ingestor", "building", "homeassistant", "healthcheck", "desk"]
    assert passwd.stat().st_mode & 0o777 == 0o600


def test_second_run_keeps_secrets_follows_the_site_and_keeps_other_users(root: Path) -> None:
    assert run_init(root) == 0
    first = init_env.parse_env((root / ".env").read_text())
    passwd = root / "mosquitto" / "passwd"
    passwd.write_text(passwd.read_text() + "gite-des-tilleuls:$7$101$abc$def\n")
    site = root / "config" / "site.yaml"
    site.write_text(site.read_text().replace("id: hotel-vda", "id: hotel-lille"))
    assert run_init(root) == 0
    second = init_env.parse_env((root / ".env").read_text())
    assert second["IRVE_SITE_ID"] == "hotel-lille"
    assert {k: v for k, v in second.items() if k != "IRVE_SITE_ID"} == {
        k: v for k, v in first.items() if k != "IRVE_SITE_ID"
    }
    users = [line.split(":")[0] for line in passwd.read_text().split()]
    assert sorted(users) == sorted(
        [
            "gite-des-tilleuls",
            "hotel-lille",
            "ingestor",
            "building",
            "homeassistant",
            "healthcheck",
            "desk",
        ]
    )


def test_an_env_from_an_older_version_gets_the_passwords_it_lacks(root: Path) -> None:
    assert run_init(root) == 0
    env_file = root / ".env"
    older = re.sub(r"^MQTT_HEALTHCHECK_PASSWORD=.*\n", "", env_file.read_text(), flags=re.M)
    env_file.write_text(older)
    assert run_init(root) == 0
    env = init_env.parse_env(env_file.read_text())
    assert re.fullmatch(r"[0-9a-f]{48}", env["MQTT_HEALTHCHECK_PASSWORD"])
    assert {k: v for k, v in env.items() if k != "MQTT_HEALTHCHECK_PASSWORD"} == (
        init_env.parse_env(older)
    )
    assert "healthcheck:" in (root / "mosquitto" / "passwd").read_text()


def test_the_broker_reads_its_private_password_file_as_its_own_user() -> None:
    """mosquitto/passwd is 0600 and owned by whoever ran `make up`: the container installs a
    copy owned by mosquitto where mosquitto.conf reads it, then runs the image's entrypoint."""
    service = SERVICES["mosquitto"]
    script = " ".join(service["entrypoint"])
    conf = (REPO / "mosquitto" / "mosquitto.conf").read_text()
    assert "password_file /mosquitto/data/passwd" in conf.splitlines()
    assert "install -m 0600 -o mosquitto -g mosquitto /mosquitto/config/passwd" in script
    assert "/mosquitto/data/passwd && exec /docker-entrypoint.sh" in script
    assert service["command"] == ["/usr/sbin/mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]


# --- `make up` checks Docker first ------------------------------------------------------------
# Docker cannot run here: a fake `docker` on PATH answers the two version questions.


def fake_docker(bin_dir: Path, compose: str | None, engine: str | None) -> None:
    """A `docker` script: `compose version --short` prints `compose` (or fails, like Docker
    without the Compose plugin: "unknown shorthand flag"), `version` prints `engine`."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "docker"
    compose_branch = (
        f'echo "{compose}"' if compose else "echo \"unknown shorthand flag: 's'\" >&2; exit 1"
    )
    engine_branch = (
        f'echo "{engine}"' if engine else 'echo "Cannot connect to the Docker daemon" >&2; exit 1'
    )
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = compose ]; then {compose_branch}; exit 0; fi\n'
        f'if [ "$1" = version ]; then {engine_branch}; exit 0; fi\n'
        "exit 1\n"
    )
    script.chmod(0o755)


@pytest.mark.parametrize(
    ("compose", "engine", "message"),
    [
        (None, "27.3.1", "no Compose plugin"),
        ("2.17.2", "27.3.1", "Docker Compose 2.17.2 is too old"),
        ("v2.29.7", "24.0.7", "Docker Engine 24.0.7 is too old"),
        ("2.29.7", None, "cannot reach the Docker Engine"),
    ],
)
def test_make_up_without_docker_compose_writes_nothing_and_says_what_is_missing(
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    compose: str | None,
    engine: str | None,
    message: str,
) -> None:
    fake_docker(root / "bin", compose, engine)
    monkeypatch.setenv("PATH", f"{root / 'bin'}:/usr/bin:/bin")
    before = sorted(root.rglob("*"))
    assert init_env.main(["--root", str(root), "--require-docker"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Engine 25+" in err and "Compose plugin 2.20+" in err
    assert sorted(root.rglob("*")) == before  # no .env, no site file, no password file


def test_make_up_without_docker_at_all(
    root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(root / "empty"))
    assert init_env.main(["--root", str(root), "--require-docker"]) == 2
    assert "no `docker` command" in capsys.readouterr().err
    assert not (root / ".env").exists()


def test_make_up_with_recent_docker_goes_on(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_docker(root / "bin", "2.29.7", "27.3.1")
    monkeypatch.setenv("PATH", f"{root / 'bin'}:/usr/bin:/bin")
    assert init_env.main(["--root", str(root), "--require-docker"]) == 0
    assert (root / ".env").exists() and (root / "mosquitto" / "passwd").exists()


def test_make_up_checks_docker_before_writing() -> None:
    recipe = (REPO / "Makefile").read_text().split("\nup:\n", 1)[1].splitlines()
    assert recipe[0].strip() == "$(PYTHON) scripts/init_env.py --require-docker"
    assert recipe[1].strip().startswith("docker compose up")


def test_an_older_env_gets_the_secrets_of_new_services(root: Path) -> None:
    """A .env made before the front desk existed: its secrets are added, the others kept."""
    older = init_env.fill_secrets(ENV_EXAMPLE)
    for name in ("MQTT_DESK_PASSWORD", "DESK_OWNER_PASSWORD"):
        older = re.sub(rf"^{name}=.*\n", "", older, flags=re.MULTILINE)
    (root / ".env").write_text(older)
    assert run_init(root) == 0
    env = init_env.parse_env((root / ".env").read_text())
    assert re.fullmatch(r"[0-9a-f]{48}", env["MQTT_DESK_PASSWORD"])
    assert re.fullmatch(r"[0-9a-f]{48}", env["DESK_OWNER_PASSWORD"])
    assert env["MQTT_COLLECTOR_PASSWORD"] == init_env.parse_env(older)["MQTT_COLLECTOR_PASSWORD"]
    assert "desk:" in (root / "mosquitto" / "passwd").read_text()


def test_reserved_or_invalid_site_ids_are_refused(root: Path) -> None:
    (root / "config" / "site.yaml").write_text("site:\n  id: building\n")
    assert run_init(root) == 2
    (root / "config" / "site.yaml").write_text("site: {id: Hotel_VDA, name: x}\n")
    assert run_init(root) == 2


def test_site_id_in_block_and_flow_style() -> None:
    block = '# c\nsite:\n  name: x  # id: no\n  id: "hotel-vda"\nmqtt:\n  id: other\n'
    assert init_env.site_id_of(block) == "hotel-vda"
    assert init_env.site_id_of("site: {name: x, id: gite}\n") == "gite"
    with pytest.raises(init_env.SetupError):
        init_env.site_id_of("mqtt:\n  id: x\n")


# --- scripts/healthcheck.py -----------------------------------------------------------------


def test_healthcheck_finds_the_container_command() -> None:
    assert healthcheck.subcommand(b"/usr/local/bin/python\0/usr/local/bin/irve\0ingest\0") == (
        "ingest"
    )
    cmdline = b"python\0-m\0collector\0--log-level\0DEBUG\0collect\0-c\0/etc/irve/site.yaml\0"
    assert healthcheck.subcommand(cmdline) == "collect"
    assert healthcheck.config_argument(cmdline) == "/etc/irve/site.yaml"
    assert healthcheck.subcommand(b"/bin/sh\0-c\0sleep 1\0") is None


def test_collector_healthcheck_reads_the_retained_status(
    tmp_path: Path, broker: servers.Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a real broker: healthy while the site's retained status says `online`."""
    monkeypatch.setattr(healthcheck, "TIMEOUT_S", 1.0)
    import paho.mqtt.publish as publish

    site = write_site(
        tmp_path,
        buses=[tcp_bus("board")],
        meters=[socket_meter("cp1", "board", 1)],
        mqtt={"host": "127.0.0.1", "port": broker.port},
    )
    topic = "irve/test-site/status"
    assert not healthcheck.retained_status_online(str(site))  # nothing retained yet
    for payload, healthy in ((b"online", True), (b"offline", False)):
        publish.single(topic, payload, qos=1, retain=True, hostname="127.0.0.1", port=broker.port)
        assert healthcheck.retained_status_online(str(site)) is healthy


def test_grafana_gets_every_variable_its_provisioning_expands() -> None:
    """grafana/provisioning and grafana/notifications hold `${VAR}` references that Grafana
    expands from its own environment: each must be set by the grafana service."""
    referenced: set[str] = set()
    for folder in ("provisioning", "notifications"):
        for path in (REPO / "grafana" / folder).rglob("*.yaml"):
            for line in path.read_text().splitlines():
                if not line.lstrip().startswith("#"):
                    referenced |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", line))
    assert {"GRAFANA_INFLUX_URL", "GRAFANA_INFLUX_TOKEN"} <= referenced
    assert referenced - set(environment(SERVICES["grafana"])) == set()


@pytest.mark.parametrize(
    ("name", "model"),
    [("collector", SiteConfig), ("ingestor", IngestorConfig), ("desk", SiteConfig)],
)
def test_irve_variables_name_real_settings(name: str, model: type[BaseModel]) -> None:
    """A misspelt IRVE_ variable would be silently ignored: each must name a settings key."""
    for key in environment(SERVICES[name]):
        if not key.startswith("IRVE_"):
            continue
        current: type[BaseModel] = model
        for part in key.removeprefix("IRVE_").lower().split("__"):
            assert part in current.model_fields, f"{name}: {key}"
            annotation = current.model_fields[part].annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                current = annotation


def test_deployment_doc_covers_every_variable_and_its_links_resolve() -> None:
    doc = (REPO / "docs" / "deployment.md").read_text()
    for name in init_env.parse_env(ENV_EXAMPLE):
        assert f"`{name}`" in doc, name
    for target in re.findall(r"\]\(([^)#]+\.md)(?:#[^)]*)?\)", doc):
        assert (REPO / "docs" / target).exists(), target
