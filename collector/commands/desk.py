"""`irve desk -c SITE.yaml`: the front desk's web application (docs/desk.md).

irve desk -c SITE.yaml                                   serve it on desk.listen
irve desk add-user NAME --role reception|owner -c SITE.yaml
                                                         password from a prompt, or one
                                                         line of standard input
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from collector.commands.check import add_config_argument
from collector.config import SiteConfig
from collector.settings import ConfigError, load

log = logging.getLogger(__name__)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "desk",
        parents=[common],
        help="the front desk: stays, badges, sessions and statements in a browser",
    )
    # Optional here so that `irve desk add-user ... -c SITE.yaml` reads naturally too.
    add_config_argument(parser, required=False)
    parser.set_defaults(run=run)
    actions = parser.add_subparsers(dest="desk_action", metavar="ACTION")
    add = actions.add_parser(
        "add-user",
        parents=[common],
        help="create a desk user, or replace its role and password",
    )
    add.add_argument(
        "-c", "--config", metavar="SITE.yaml", help="site file", default=argparse.SUPPRESS
    )
    add.add_argument("name")
    add.add_argument("--role", choices=("reception", "owner"), required=True)
    add.set_defaults(run=run_add_user)


def site_file(args: argparse.Namespace) -> str:
    if not getattr(args, "config", None):
        raise ConfigError(["-c/--config: the site file is required"])
    return str(args.config)


def database_path(site: SiteConfig) -> Path:
    return site.desk.database or Path(site.state_dir) / "desk.sqlite3"


def run_add_user(args: argparse.Namespace) -> int:
    from collector.desk import auth
    from collector.desk.storage import Storage, StorageUnavailable

    site = load(SiteConfig, site_file(args))
    name = args.name.strip()
    if not name or len(name) > 64:
        print("irve desk add-user: NAME: 1 to 64 characters", file=sys.stderr)
        return 2
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != password:
            print("irve desk add-user: the two passwords differ; nothing changed", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    problem = auth.password_problem(password)
    if problem:
        print(f"irve desk add-user: {problem}; nothing changed", file=sys.stderr)
        return 2
    storage = Storage(database_path(site))
    try:
        storage.migrate()
        created = storage.put_user(name, args.role, auth.hash_password(password))
    except StorageUnavailable as exc:
        print(f"irve desk add-user: {storage.path}: {exc}; nothing changed", file=sys.stderr)
        return 1
    print(f"irve desk: user {name} ({args.role}) {'created' if created else 'updated'}")
    return 0


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from collector.desk import auth
    from collector.desk.app import Desk, create_app
    from collector.desk.badges import BadgePublisher
    from collector.desk.live import LiveState, subscriptions
    from collector.desk.stays import Defaults
    from collector.desk.storage import Storage, StorageUnavailable
    from collector.mqtt.client import MqttLink
    from collector.store.influxql import InfluxQL
    from collector.wire.topics import Topics

    site = load(SiteConfig, site_file(args))
    settings = site.desk
    storage = Storage(database_path(site))
    try:
        storage.migrate()
        if settings.owner_password is not None:
            password = settings.owner_password.get_secret_value()
            problem = auth.password_problem(password)
            if problem:
                print(f"irve desk: desk.owner_password: {problem}", file=sys.stderr)
                return 2
            if auth.ensure_user(storage, "owner", "owner", password):
                log.info("desk: the owner account's password was set from desk.owner_password")
    except StorageUnavailable as exc:
        print(f"irve desk: {storage.path}: {exc}", file=sys.stderr)
        return 1
    base = Topics(site.mqtt.topic_prefix, site.site.id).base
    grace = timedelta(hours=settings.grace_h)
    link = MqttLink(
        site.mqtt,
        site.mqtt.client_id or f"irve-desk-{site.site.id}",
        f"{base}/desk/status",
        subscriptions(base),
    )
    live = LiveState(site, base)

    def rooms_changed(rooms: dict[str, str]) -> None:
        live.rooms = rooms

    publisher = BadgePublisher(storage, link, f"{base}/badges", grace, rooms_changed)
    desk = Desk(
        site,
        storage,
        link,
        live,
        publisher,
        InfluxQL.from_settings(site.influx),
        Defaults(
            settings.policy,
            Decimal(repr(settings.fee_eur)),
            Decimal(repr(settings.kwh_per_night)),
            grace,
        ),
    )
    tls = settings.tls
    log.info("desk: %s on %s://%s", storage.path, "https" if tls else "http", settings.listen)
    uvicorn.run(
        create_app(desk),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        proxy_headers=True,
        ssl_certfile=str(tls.cert_file) if tls else None,
        ssl_keyfile=str(tls.key_file) if tls else None,
        timeout_graceful_shutdown=5,
    )
    return 0
