"""Run the stack's mosquitto configuration outside Docker (`make demo`, the tests).

`mosquitto/mosquitto.conf` is written for the container (/mosquitto/config, /mosquitto/data,
listener 1883). `prepare` copies it into a folder with those paths rewritten, the listener on
a given port and address, the project's ACL file and a password file for the given users:
the broker then enforces exactly the stack's rules.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from scripts.init_env import password_file

MOSQUITTO_DIR = Path(__file__).resolve().parent.parent / "mosquitto"
CONTAINER_CONFIG = "/mosquitto/config"
CONTAINER_DATA = "/mosquitto/data"


def local_conf(
    conf: str, config_dir: Path, data_dir: Path, port: int, address: str = "127.0.0.1"
) -> str:
    """The container's mosquitto.conf with local paths and listener."""
    if not re.search(r"^listener 1883$", conf, re.MULTILINE):
        raise ValueError("mosquitto.conf: no `listener 1883` line to rewrite")
    text = conf.replace(CONTAINER_CONFIG, str(config_dir)).replace(CONTAINER_DATA, str(data_dir))
    text = re.sub(r"^listener 1883$", f"listener {port} {address}", text, flags=re.MULTILINE)
    # Started as root, mosquitto drops to the `mosquitto` user before reading the password
    # file, which then cannot enter a private temporary folder: stay the current user.
    return text + f"\nuser {pwd.getpwuid(os.geteuid()).pw_name}\n"


def prepare(
    workdir: Path,
    port: int,
    users: Mapping[str, str],
    source: Path = MOSQUITTO_DIR,
    address: str = "127.0.0.1",
) -> Path:
    """Write a runnable copy of `source` into `workdir`; returns the mosquitto.conf path."""
    config_dir, data_dir = workdir / "config", workdir / "data"
    (config_dir / "conf.d").mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "acl", config_dir / "acl")
    # mosquitto.conf reads the password file from the data folder (the container installs
    # a copy there owned by the broker's user).
    (data_dir / "passwd").write_text(password_file(users), encoding="utf-8")
    conf = config_dir / "mosquitto.conf"
    conf.write_text(
        local_conf(
            (source / "mosquitto.conf").read_text(encoding="utf-8"),
            config_dir,
            data_dir,
            port,
            address,
        ),
        encoding="utf-8",
    )
    return conf
