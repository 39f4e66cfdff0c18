"""`irve collect -c SITE.yaml`: poll the site's meters and publish to MQTT until stopped.

SIGTERM or SIGINT stops cleanly (status `offline`, outbox flushed, disconnect, phone
notifications delivered or given up). Exit 2 on an invalid configuration, 1 when the collector
fails at run time.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from datetime import datetime
from typing import Any

from collector.alerts.notify import Notifier
from collector.collect import Collector, Stages, build_processors, collector_link
from collector.commands.check import add_config_argument, serial_warnings
from collector.commands.recompute import recompute
from collector.config import SiteConfig
from collector.energy.tariff import Tariff, offpeak_warnings
from collector.load.controller import from_config
from collector.load.service import LoadService
from collector.meters.poller import Poller
from collector.meters.profile import Profile
from collector.mqtt.client import MqttLink
from collector.ocpp.server import CentralSystem, StartError, state_path
from collector.site import load_site
from collector.tariffs.repricing import Repricer
from collector.tariffs.tempo import ColourCache, RtePoller
from collector.wire.kinds import Outgoing
from collector.wire.times import utc_now

log = logging.getLogger(__name__)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "collect", parents=[common], help="poll the meters (Modbus) and publish to MQTT"
    )
    add_config_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    site, profiles = load_site(args.config)
    for warning in serial_warnings(site, profiles) + offpeak_warnings(site.tariff):
        log.warning("%s", warning)
    return event_loop_runner()(serve(site, profiles))


def event_loop_runner() -> Callable[[Coroutine[Any, Any, int]], int]:
    """uvloop where it is installed (a dependency on Linux x86-64 and ARM64): libuv's event loop
    costs irve collect less CPU per reading than asyncio's own (docs/benchmarks.md, collector);
    asyncio's loop elsewhere, with the same behaviour."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


@asynccontextmanager
async def open_collector(
    site: SiteConfig,
    profiles: dict[str, Profile],
    stages: Stages | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> AsyncIterator[Collector[MqttLink]]:
    """The app with the services it uses, each entered here and closed here in reverse order:
    the notifier (after the link, so the last alerts are still notified), then the MQTT link
    (after the app has stopped its processors, so their last messages are flushed), then the
    OCPP central system when the site has chargers (the app stops it before its processors).
    With `knx`, the KNX switches; with load management or schedules, the load service (using
    the central system and the switches; stopped by the app before the central system).
    With Tempo, the re-pricing thread (which publishes through this link) and, with
    `source: rte`, the colour poller run while the link is open, stopped before it closes.
    `stages`: instead of the site's processors (tests)."""
    loop = asyncio.get_running_loop()
    with Notifier.from_site(site) as notifier:
        link = collector_link(site)
        if stages is None:
            stages = build_processors(site, profiles, notifier)
        app = Collector(site, profiles, link, stages, clock)
        async with AsyncExitStack() as services:
            await services.enter_async_context(link)
            central: CentralSystem | None = None
            if site.ocpp is not None and site.chargers:
                central = CentralSystem(
                    site.ocpp,
                    site.chargers,
                    state_path(site.state_dir, site.site.id),
                    app.ocpp_event,
                    clock=clock,
                )
                app.attach_chargers(await services.enter_async_context(central))
            contactors = None
            if site.knx is not None:
                # Here, not at the top: xknx costs 15 MB of RSS, on sites without KNX too.
                from collector.knx.switches import KnxSwitches

                contactors = await services.enter_async_context(KnxSwitches(site.knx))
            controller = from_config(site)
            if controller is not None:
                load = LoadService(site, controller, app.publish_all, central, contactors)
                app.attach_load(await services.enter_async_context(load))
            with ExitStack() as threads:
                if stages.tempo is not None:
                    tempo_services(site, stages.tempo, threads, loop, app, clock)
                yield app


def tempo_services(
    site: SiteConfig,
    cache: ColourCache,
    services: ExitStack,
    loop: asyncio.AbstractEventLoop,
    app: Collector[MqttLink],
    clock: Callable[[], datetime],
    settle_s: float | None = None,
) -> None:
    """The re-pricing thread (publishing through the app's link, from the loop's thread) and,
    with `source: rte`, the colour poller. `settle_s`: see Repricer."""

    def to_link(out: list[Outgoing]) -> None:
        loop.call_soon_threadsafe(app.publish_all, out)

    def reprice(s: SiteConfig, tariff: Tariff, start: datetime, end: datetime) -> int:
        return recompute(s, tariff, start, end, send=to_link)

    repricer = services.enter_context(Repricer(site, cache.colours, reprice, clock, settle_s))
    cache.on_learned = repricer.learned
    if site.tariff.tempo.source == "rte":
        services.enter_context(RtePoller(site.tariff.tempo, cache, site.site.tz, clock))


async def serve(site: SiteConfig, profiles: dict[str, Profile]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _stopper(stop, signum))
    log.info(
        "collecting site %s: %d meter(s), %d OCPP charger(s)",
        site.site.id,
        len(site.meters),
        len(site.chargers),
    )
    try:
        async with open_collector(site, profiles) as app:
            await app.run(Poller(site, profiles, app), stop)
    except (RuntimeError, StartError) as exc:
        log.error("collector failed: %s", exc)
        return 1
    return 0


def _stopper(stop: asyncio.Event, signum: signal.Signals) -> Callable[[], None]:
    def handler() -> None:
        log.info("%s received: stopping", signum.name)
        stop.set()

    return handler
