"""The collector app in tests, wired as `irve collect` wires it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

from collector.collect import Collector, Source, Stages, build_processors, collector_link
from collector.config import SiteConfig
from collector.meters.profile import Profile
from collector.mqtt.client import MqttLink
from collector.wire.times import utc_now


def make_app(
    site: SiteConfig,
    profiles: dict[str, Profile],
    stages: Stages | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> Collector[MqttLink]:
    """The site's processors (or `stages`) and its MQTT link, without phone notifications
    (tests of those use collector.commands.collect.open_collector)."""
    if stages is None:
        stages = build_processors(site, profiles)
    return Collector(site, profiles, collector_link(site), stages, clock)


async def with_app(
    app: Collector[MqttLink], poller: Source, body: Callable[[], Awaitable[None]]
) -> None:
    """Run the app (its link entered around it, as `irve collect` does) while `body` runs,
    then stop it cleanly."""
    stop = asyncio.Event()
    async with app.link:
        task = asyncio.create_task(app.run(poller, stop))
        try:
            await body()
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
