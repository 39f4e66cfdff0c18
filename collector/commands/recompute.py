"""`irve recompute -c SITE.yaml --from 2026-02-01 --to 2026-03-01`: after the owner corrects a
price row, or once Tempo colours are known, re-price the stored energy windows (and the
sessions) of a range and publish them again on MQTT for the ingestor.

The republished messages keep their start time and tags (site, point, period; badge for
sessions), so the ingestor overwrites the stored points instead of adding new ones. The range
is widened to whole sessions that overlap it (collector.billing.reprice).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from collector.billing.reprice import (
    PointWindow,
    repriced_session,
    repriced_window,
    session_end,
    span,
    stale_window,
)
from collector.billing.source import load_sessions, load_windows
from collector.billing.statement import money
from collector.commands.check import add_config_argument
from collector.config import MqttSettings, SiteConfig
from collector.energy.tariff import Tariff, TariffError
from collector.mqtt.auth import new_client
from collector.settings import ConfigError
from collector.site import load_site, local_instant
from collector.store.influxql import InfluxQL, InfluxQLError
from collector.tariffs.tempo import known_colours
from collector.wire.kinds import Outgoing, envelope
from collector.wire.topics import Topics

log = logging.getLogger(__name__)
PUBLISH_TIMEOUT_S = 30.0
# How far before the range a session may have started and still run into it.
SESSION_LOOKBACK = timedelta(days=7)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "recompute", parents=[common], help="re-price stored energy after a price fix"
    )
    add_config_argument(parser)
    parser.add_argument("--from", dest="start", required=True, help="YYYY-MM-DD[THH:MM] local")
    parser.add_argument(
        "--to", dest="end", required=True, help="YYYY-MM-DD[THH:MM] local, excluded"
    )
    parser.add_argument("--point", help="only this meter")
    parser.add_argument("--dry-run", action="store_true", help="count, publish nothing")
    parser.add_argument(
        "--client-id",
        help="MQTT client id (default irve-recompute-<site>; never the collector's, which it "
        "would disconnect; a broker binding client ids to users names it after the user)",
    )
    parser.set_defaults(run=run)


def publish(settings: MqttSettings, messages: list[tuple[str, bytes]], client_id: str) -> None:
    """QoS 1, each acknowledged by the broker before we return."""
    client = new_client(settings, client_id, protocol="3.1.1")
    client.connect(settings.host, settings.port, settings.keepalive_s)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(PUBLISH_TIMEOUT_S)
            if not info.is_published():
                raise RuntimeError("the broker did not acknowledge every message")
    finally:
        client.disconnect()
        client.loop_stop()


def run(args: argparse.Namespace) -> int:
    site, _ = load_site(args.config)
    tz = site.site.tz
    start = local_instant(args.start, tz, "from")
    end = local_instant(args.end, tz, "to")
    if end <= start:
        raise ConfigError(["--to: must be after --from"])
    tariff = Tariff(site.tariff, tz, known_colours(site))
    return recompute(site, tariff, start, end, args.point, args.dry_run, args.client_id)


def recompute(
    site: SiteConfig,
    tariff: Tariff,
    start: datetime,
    end: datetime,
    point: str | None = None,
    dry_run: bool = False,
    client_id: str | None = None,
    send: Callable[[list[Outgoing]], None] | None = None,
) -> int:
    """Re-price [start, end) with `tariff` and republish; 0, or 1 when a server failed.

    `send`: hand the messages to a running collector's own link instead of connecting (on a
    broker that binds client ids to users, a second connection with the collector's
    credentials would replace the collector's)."""
    tz = site.site.tz
    window_s = site.energy.window_s
    client = InfluxQL.from_settings(site.influx)
    try:
        found, _ = load_sessions(client, site.site.id, start - SESSION_LOOKBACK, end, None, point)
        sessions = [s for s in found if session_end(s) > start]
        lo, hi = span(start, end, sessions, window_s)
        stored = load_windows(client, site.site.id, lo, hi, point)
    except InfluxQLError as exc:
        print(f"irve recompute: {exc}", file=sys.stderr)
        return 1
    try:
        windows = [
            PointWindow(w.point, repriced_window(w, tariff, window_s), w.period) for w in stored
        ]
        repriced = [repriced_session(s, windows, tariff, window_s) for s in sessions]
    except TariffError as exc:
        raise ConfigError([str(exc)]) from None
    before = sum(w.cost_eur for w in stored)
    after = sum(w.message.cost_eur for w in windows)
    changed = sum(
        1 for old, new in zip(stored, windows, strict=True) if old.cost_eur != new.message.cost_eur
    )
    print(
        f"{lo.astimezone(tz):%Y-%m-%d %H:%M} .. {hi.astimezone(tz):%Y-%m-%d %H:%M}: "
        f"{len(stored)} energy windows ({changed} with a new cost), {len(sessions)} sessions; "
        f"energy cost {money(before)} -> {money(after)} EUR"
    )
    if dry_run:
        return 0
    emptied = [
        Outgoing(old.point, stale)
        for old, new in zip(stored, windows, strict=True)
        if (stale := stale_window(old, new.message)) is not None
    ]
    out = emptied + [Outgoing(w.point, w.message) for w in windows]
    out += [Outgoing(s.point, message) for s, message in zip(sessions, repriced, strict=True)]
    if send is not None:
        send(out)
        print(f"handed {len(out)} messages to the collector's link")
        return 0
    topics = Topics(site.mqtt.topic_prefix, site.site.id)
    envelopes = [envelope(topics, o) for o in out]
    try:
        publish(
            site.mqtt,
            [(e.topic, e.payload) for e in envelopes],
            client_id or f"irve-recompute-{site.site.id}",
        )
    except (OSError, RuntimeError) as exc:
        print(f"irve recompute: MQTT: {exc}", file=sys.stderr)
        return 1
    print(f"republished {len(out)} messages; the ingestor overwrites the stored points")
    return 0
