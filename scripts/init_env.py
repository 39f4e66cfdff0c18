#!/usr/bin/env python3
"""Prepare the Docker stack's secrets and site file; `make up` runs this before compose.

1. `.env`: created from `.env.example` on the first run, every password and token of the
   stack (GENERATED) filled with a fresh random value. An existing `.env` is kept as it is,
   except that `IRVE_SITE_ID` follows the site file (the collector's MQTT username is its
   site id) and a GENERATED variable it lacks (added by a later version) gets a value.
2. `config/site.yaml`: created on the first run from the Villeneuve d'Ascq example, its Modbus
   bus pointed at the `simulator` container. Pointing the stack at real meters is an edit of
   this one file (and COMPOSE_PROFILES= in .env to stop the simulator).
3. `mosquitto/passwd`: the broker's password file (mosquitto 2 `$7$` PBKDF2-SHA512 hashes,
   mode 0600) for the collector, ingestor, building, homeassistant, healthcheck and desk
   users, rewritten from `.env` on
   every run so that changing a password in `.env` is enough. Lines for other users (e.g.
   the sites of a central broker, added with `mosquitto_passwd`) are kept.

Standard library only: it runs with the host's python3, before any venv exists.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The secrets `make up` generates; the other empty variables (alert channels, SMTP) stay
# empty until the installer fills them.
GENERATED = (
    "MQTT_COLLECTOR_PASSWORD",
    "MQTT_INGESTOR_PASSWORD",
    "MQTT_BUILDING_PASSWORD",
    "MQTT_HOMEASSISTANT_PASSWORD",
    "MQTT_HEALTHCHECK_PASSWORD",
    "INFLUXDB_ADMIN_PASSWORD",
    "INFLUXDB_ADMIN_TOKEN",
    "GRAFANA_ADMIN_PASSWORD",
    "MQTT_DESK_PASSWORD",
    "DESK_OWNER_PASSWORD",
)
# mosquitto_passwd's own parameters for the `$7$` format (mosquitto 2.0).
PBKDF2_ITERATIONS = 101
SALT_BYTES = 12
SIMULATOR_HOST = "simulator"
# The compose file uses `start_interval` (Engine 25) and `depends_on.required` (Compose 2.20).
MIN_ENGINE = (25, 0)
MIN_COMPOSE = (2, 20)

# Service users; a site's collector is the fourth kind, named after its site id.
SERVICE_USERS = {
    "ingestor": "MQTT_INGESTOR_PASSWORD",
    "building": "MQTT_BUILDING_PASSWORD",
    "homeassistant": "MQTT_HOMEASSISTANT_PASSWORD",
    "healthcheck": "MQTT_HEALTHCHECK_PASSWORD",
    "desk": "MQTT_DESK_PASSWORD",
}
COLLECTOR_PASSWORD = "MQTT_COLLECTOR_PASSWORD"
SITE_ID = "IRVE_SITE_ID"
RESERVED_SITE_IDS = frozenset(SERVICE_USERS)

_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_SITE_ID = re.compile(r"^[a-z0-9-]+$")


class SetupError(Exception):
    """Something the installer must fix; the message says what."""


def _version(text: str) -> tuple[int, int] | None:
    match = re.search(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=30, check=False
    )


def check_docker() -> None:
    """Docker Engine 25+ and its Compose plugin 2.20+ are there; SetupError says what is not."""
    need = (
        f"the stack needs Docker Engine {MIN_ENGINE[0]}+ with the Compose plugin "
        f"{'.'.join(map(str, MIN_COMPOSE))}+ (`docker compose`, not `docker-compose`): "
        "https://docs.docker.com/engine/install/"
    )
    try:
        compose = _docker("compose", "version", "--short")
    except FileNotFoundError:
        raise SetupError(f"no `docker` command; {need}") from None
    except subprocess.TimeoutExpired:
        raise SetupError(f"`docker compose version` did not answer; {need}") from None
    found = _version(compose.stdout) if compose.returncode == 0 else None
    if found is None:
        raise SetupError(f"`docker compose` is not available (no Compose plugin); {need}")
    if found < MIN_COMPOSE:
        raise SetupError(f"Docker Compose {compose.stdout.strip()} is too old; {need}")
    engine = _docker("version", "--format", "{{.Server.Version}}")
    found = _version(engine.stdout) if engine.returncode == 0 else None
    if found is None:
        detail = engine.stderr.strip().splitlines()[-1:] or ["no answer"]
        raise SetupError(f"cannot reach the Docker Engine ({detail[0]}); {need}")
    if found < MIN_ENGINE:
        raise SetupError(f"Docker Engine {engine.stdout.strip()} is too old; {need}")


def random_secret() -> str:
    """48 hex digits (192 bits): nothing to quote or escape in .env, YAML, URLs or shells."""
    return secrets.token_hex(24)


def parse_env(text: str) -> dict[str, str]:
    """KEY=VALUE lines of a compose .env file; comments and blank lines ignored."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = _ASSIGNMENT.match(line.strip())
        if match:
            value = match.group(2).strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[match.group(1)] = value
    return values


def fill_secrets(template: str, make_secret: Callable[[], str] = random_secret) -> str:
    """The template with every empty or missing GENERATED variable given a random value."""
    lines = []
    for line in template.splitlines():
        match = _ASSIGNMENT.match(line)
        if match and not match.group(2).strip() and match.group(1) in GENERATED:
            line = f"{match.group(1)}={make_secret()}"
        lines.append(line)
    text = "\n".join(lines) + "\n"
    for name in GENERATED:
        if not parse_env(text).get(name):
            text = set_variable(text, name, make_secret())
    return text


def set_variable(text: str, name: str, value: str) -> str:
    """`text` with `name=value`: the existing line replaced, or one appended."""
    pattern = re.compile(rf"^{re.escape(name)}=.*$", re.MULTILINE)
    if pattern.search(text):
        return pattern.sub(f"{name}={value}", text, count=1)
    return text.rstrip("\n") + f"\n{name}={value}\n"


def site_id_of(site_yaml: str) -> str:
    """`site.id` of a site file, read without a YAML library (block or flow style)."""
    flow = re.search(r"^site:\s*\{[^}]*\bid:\s*[\"']?([^,\s\"'}]+)", site_yaml, re.MULTILINE)
    if flow:
        return flow.group(1)
    in_site = False
    for line in site_yaml.splitlines():
        if re.match(r"^site:\s*(#.*)?$", line):
            in_site = True
        elif in_site and line[:1] not in ("", " ", "\t", "#"):
            break
        elif in_site:
            match = re.match(r"^\s+id:\s*[\"']?([^\s\"'#]+)", line)
            if match:
                return match.group(1)
    raise SetupError("no site.id in the site file")


def check_site_id(site_id: str) -> str:
    if not _SITE_ID.match(site_id):
        raise SetupError(f"site.id {site_id!r}: must match [a-z0-9-]+")
    if site_id in RESERVED_SITE_IDS:
        raise SetupError(f"site.id {site_id!r}: reserved for a broker service user")
    return site_id


def mosquitto_hash(password: str, salt: bytes | None = None) -> str:
    """A mosquitto 2 password-file hash: `$7$<iterations>$<b64 salt>$<b64 PBKDF2-SHA512>`."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return (
        f"$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}"
        f"${base64.b64encode(digest).decode()}"
    )


def mqtt_users(env: Mapping[str, str]) -> dict[str, str]:
    """username -> password of every broker user the stack needs, from .env values."""
    site_id = check_site_id(env.get(SITE_ID, ""))
    users = {site_id: env.get(COLLECTOR_PASSWORD, "")}
    users.update({user: env.get(var, "") for user, var in SERVICE_USERS.items()})
    missing = [
        var
        for user, var in [(site_id, COLLECTOR_PASSWORD), *SERVICE_USERS.items()]
        if not users[user]
    ]
    if missing:
        raise SetupError(f".env: empty {', '.join(missing)}")
    return users


def password_file(users: Mapping[str, str], existing: str = "", drop: Collection[str] = ()) -> str:
    """mosquitto password file: `users` hashed afresh, the other users of `existing` kept
    except those in `drop`."""
    kept = [
        line
        for line in existing.splitlines()
        if line.strip() and line.partition(":")[0] not in {*users, *drop}
    ]
    hashed = [f"{user}:{mosquitto_hash(password)}" for user, password in users.items()]
    return "\n".join(kept + hashed) + "\n"


def simulated_site(example_yaml: str) -> str:
    """The example site file with its TCP buses served by the simulator container."""
    body = re.sub(r"\bhost:\s*127\.0\.0\.1\b", f"host: {SIMULATOR_HOST}", example_yaml)
    header = (
        "# The site file of the Docker stack (created by `make up` from\n"
        "# config/examples/hotel-vda.yaml). Its meters are served by the `simulator` container:\n"
        "# for real meters, set each bus's host/port (or RS-485 device), the meters' unit ids and\n"
        "# profiles, then set COMPOSE_PROFILES= in .env and run `make up` again.\n"
        "# The collector's MQTT username is site.id (make up keeps IRVE_SITE_ID in .env in sync).\n"
    )
    return header + body


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, mode)


def prepare(root: Path, site_file: Path, env_file: Path, passwd_file: Path) -> list[str]:
    """Create what is missing and refresh the password file; returns what was done."""
    done: list[str] = []
    if not site_file.exists():
        example = root / "config" / "examples" / "hotel-vda.yaml"
        site_file.parent.mkdir(parents=True, exist_ok=True)
        site_file.write_text(simulated_site(example.read_text(encoding="utf-8")), "utf-8")
        done.append(f"created {site_file} (simulated hotel)")
    site_id = check_site_id(site_id_of(site_file.read_text(encoding="utf-8")))

    if env_file.exists():
        env_text = env_file.read_text(encoding="utf-8")
        filled = fill_secrets(env_text)
        if filled != env_text:
            added = sorted(set(parse_env(filled).items()) - set(parse_env(env_text).items()))
            done.append(f"added {', '.join(name for name, _ in added)} to {env_file}")
            env_text = filled
    else:
        template = (root / ".env.example").read_text(encoding="utf-8")
        env_text = fill_secrets(template)
        done.append(f"created {env_file} with random passwords and tokens")
    previous_site = parse_env(env_text).get(SITE_ID, "")
    if previous_site != site_id:
        env_text = set_variable(env_text, SITE_ID, site_id)
        done.append(f"{SITE_ID}={site_id} in {env_file}")
    write_private(env_file, env_text)

    existing = passwd_file.read_text(encoding="utf-8") if passwd_file.exists() else ""
    users = mqtt_users(parse_env(env_text))
    # 0600 like .env: the mosquitto container starts as root and installs a copy owned by its
    # own user (docker-compose.yml), which is the only one mosquitto reads.
    # The collector user of a renamed site goes; other users (a central broker's sites) stay.
    stale = [previous_site] if previous_site not in ("", site_id) else []
    write_private(passwd_file, password_file(users, existing, stale))
    done.append(f"wrote {passwd_file} ({', '.join(users)})")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=REPO, help="repository (default: this one)")
    parser.add_argument("--site", type=Path, help="site file (default ROOT/config/site.yaml)")
    parser.add_argument("--env-file", type=Path, help="default ROOT/.env")
    parser.add_argument("--passwd", type=Path, help="default ROOT/mosquitto/passwd")
    parser.add_argument(
        "--require-docker",
        action="store_true",
        help="first check Docker Engine and Compose versions; write nothing if they fall short",
    )
    args = parser.parse_args(argv)
    root: Path = args.root
    try:
        if args.require_docker:
            check_docker()
        done = prepare(
            root,
            args.site or root / "config" / "site.yaml",
            args.env_file or root / ".env",
            args.passwd or root / "mosquitto" / "passwd",
        )
    except (SetupError, OSError) as exc:
        print(f"init_env: {exc}", file=sys.stderr)
        return 2
    for line in done:
        print(f"init_env: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
