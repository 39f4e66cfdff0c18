"""The collector app (`irve collect`): meters -> processors -> MQTT.

The input (collector.meters.poller.Poller, or anything with `async run()`) calls `reading` and `availability`
on the app (it is the poller's sink). Each reading becomes a retained `state` message and is
fed to the processors (energy, sessions, alerts); what they return is published too. A 1 s tick
drives their timers; badges received on `irve/{site}/+/badge` go to their `on_badge`, at most
BADGE_RATE_PER_S per socket and never a retained one. With `tariff.tempo.source: mqtt`, the
retained `irve/{site}/tempo` colours go to the Tempo colour cache.

With OCPP chargers (`attach_chargers`), the central system's events come to `ocpp_event`: its
transactions become the energy stage's sessions, the rest catalogue messages
(collector.ocpp.bridge); the retained badge list `irve/{site}/badges` and the commands of
`irve/{site}/+/command` go to the central system.

With load management (`attach_load`), readings, availability, ticks and the chargers' events
also go to the load service (collector.load.service), which acts without keeping them waiting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from pydantic import ValidationError

from collector.alerts.notify import Notifier
from collector.alerts.processor import AlertProcessor
from collector.badges import BadgeRefusals
from collector.config import SiteConfig
from collector.energy.processor import EnergyProcessor
from collector.load.controller import manages_load
from collector.load.service import LoadService
from collector.meters.profile import Profile
from collector.meters.reading import Reading, state_keys
from collector.mqtt.client import MqttLink
from collector.mqtt.discovery import discovery_messages, former_discovery_topics
from collector.mqtt.spool import Spool
from collector.ocpp.bridge import OcppBridge
from collector.ocpp.core import Badge, CommandError, parse_badge_list
from collector.ocpp.events import (
    ChargerOffline,
    ChargerOnline,
    CommandResult,
    Event,
    TransactionEnded,
    TransactionStarted,
)
from collector.pipeline import Processor
from collector.state import FileStateStore, alerts_path, default_path
from collector.tariffs.subscription import SubscriptionProcessor
from collector.tariffs.tempo import ColourCache, cache_path, parse_message
from collector.wire.kinds import Envelope, Outgoing, envelope
from collector.wire.messages import AvailabilityMessage, BadgeMessage, CommandMessage, EventMessage
from collector.wire.times import utc_now
from collector.wire.topics import Topics, parse_topic

log = logging.getLogger(__name__)

TICK_S = 1.0
# A badge reader shows a few badges a second at most: beyond that (a stuck reader, a script),
# badges are dropped before they cost the polling loop anything. A burst of BADGE_BURST passes.
BADGE_RATE_PER_S = 2.0
BADGE_BURST = 5
FLOOD_LOG_EVERY_S = 10.0

Observer = Callable[[Outgoing], None]


@dataclass
class Stages:
    """What sits between the meters and MQTT (built by `build_processors`), each by its name."""

    alerts: AlertProcessor | None = None  # alert rules and the shed request
    energy: EnergyProcessor | None = None  # windows, sessions, index events; `charging`
    notifier: Notifier | None = None  # phone notifications of alerts
    tempo: ColourCache | None = None  # the Tempo colours the energy processor prices with
    others: list[Processor] = field(default_factory=list)  # further processors
    # Further observers: called with every message the app publishes.
    observers: list[Observer] = field(default_factory=list)

    @property
    def processors(self) -> list[Processor]:
        """Every processor, in the order each event goes through them."""
        named: list[Processor | None] = [self.alerts, self.energy]
        return [p for p in named if p is not None] + self.others

    def all_observers(self) -> list[Observer]:
        return ([self.notifier.observe] if self.notifier is not None else []) + self.observers

    def charging(self, point: str) -> bool | None:
        """Whether a session runs on this socket, for the state message (None: unknown)."""
        return self.energy.charging(point) if self.energy is not None else None


def build_processors(
    site: SiteConfig, profiles: dict[str, Profile], notifier: Notifier | None = None
) -> Stages:
    """THE place where processing stages are plugged in, one line each. The state files are
    the processors' (closed by their `close`); the notifier is its owner's."""
    alert_state = FileStateStore(alerts_path(site.state_dir, site.site.id), what="alert state")
    energy_state = FileStateStore(
        site.energy.state_file or default_path(site.state_dir, site.site.id)
    )
    tempo = ColourCache(cache_path(site)) if site.tariff.option == "tempo" else None
    colours = tempo.colours if tempo is not None else None
    subscription_state = FileStateStore(
        site.state_dir / f"subscription-{site.site.id}.json", what="subscription state"
    )
    return Stages(
        alerts=AlertProcessor(site, store=alert_state),
        energy=EnergyProcessor(site, profiles=profiles, store=energy_state, colours=colours),
        notifier=notifier,
        tempo=tempo,
        others=[SubscriptionProcessor(site, store=subscription_state)],
    )


def collector_link(site: SiteConfig) -> MqttLink:
    """The collector's MQTT link (not started: its owner enters it)."""
    topics = Topics(site.mqtt.topic_prefix, site.site.id)
    subscriptions = [topics.point("+", "badge")]
    if site.ocpp is not None:
        # Its own retained charger descriptions too: after a restart a charger that only
        # reconnects (no new boot) keeps its vendor, model, serial and firmware.
        subscriptions += [
            topics.site_topic("badges"),
            topics.point("+", "command"),
            topics.charger("+"),
        ]
    if site.tariff.option == "tempo" and site.tariff.tempo.source == "mqtt":
        subscriptions.append(topics.site_topic("tempo"))
    if site.mqtt.discovery:
        subscriptions.append(f"{site.mqtt.discovery_prefix}/status")
    return MqttLink(
        site.mqtt,
        # The site id: unique per site even where several sites share a broker user,
        # and the id a broker binding client ids to users gives it (username = site id).
        client_id=site.mqtt.client_id or site.site.id,
        status_topic=topics.site_topic("status"),
        subscriptions=subscriptions,
        spool=Spool(site.state_dir / f"outbox-{site.site.id}.jsonl"),
    )


class Link(Protocol):
    """What the collector needs of its MQTT link (collector.mqtt.client.MqttLink)."""

    def attach(
        self, on_message: Callable[[str, bytes, bool], None], on_connected: Callable[[], None]
    ) -> None: ...

    def send(self, envelope: Envelope) -> None: ...


LinkT = TypeVar("LinkT", bound=Link)


@dataclass
class BadgeLimit:
    """A token bucket per socket (monotonic seconds), and what it dropped since it last said so."""

    tokens: float = BADGE_BURST
    at: float | None = None
    dropped: int = 0
    logged_at: float | None = None

    def allow(self, now: float) -> bool:
        if self.at is not None:
            self.tokens = min(BADGE_BURST, self.tokens + (now - self.at) * BADGE_RATE_PER_S)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.dropped += 1
        return False

    def report_due(self, now: float) -> bool:
        """Time for a log line about the dropped badges (then counted from zero again)."""
        if self.logged_at is not None and now - self.logged_at < FLOOD_LOG_EVERY_S:
            return False
        self.logged_at = now
        return True


class Source(Protocol):
    async def run(self) -> None: ...


class Chargers(Protocol):
    """What the collector needs of the OCPP central system (collector.ocpp.server)."""

    def set_badges(self, badges: Sequence[Badge]) -> None: ...

    async def command(
        self, point: str, action: str, badge: str | None = None, connector: int | None = None
    ) -> list[CommandResult]: ...

    async def stop(self) -> None: ...


class Collector(Generic[LinkT]):
    """The app: a poller sink, the processors and the MQTT link. The link and the stages are
    made, entered and closed by the app's owner (collector.commands.collect); the app only
    closes its processors when it stops."""

    def __init__(
        self,
        site: SiteConfig,
        profiles: dict[str, Profile],
        link: LinkT,
        stages: Stages,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.site = site
        self.clock = clock
        self.stages = stages
        self.topics = Topics(site.mqtt.topic_prefix, site.site.id)
        self._roles = {m.id: m.role for m in site.meters}
        self._state_keys = {m.id: state_keys(site, m) for m in site.meters}
        self._ha_status = f"{site.mqtt.discovery_prefix}/status"
        self._badge_limits = {m.id: BadgeLimit() for m in site.meters}
        self._command_limits = {m.id: BadgeLimit() for m in site.meters}
        self.chargers: Chargers | None = None
        self.load: LoadService | None = None
        # charger_offline alerts firing before a restart stay firing (alert state file).
        alerts = stages.alerts
        offline = set() if alerts is None else alerts.restored("charger_offline")
        offline &= {c.id for c in site.chargers}
        self._ocpp = OcppBridge(site.notify.language, offline)
        if alerts is not None:
            alerts.hold("charger_offline", offline)
        # The badge list as last received: the central system may be attached after it came.
        self._badges: list[Badge] | None = None
        self._commands: set[asyncio.Task[None]] = set()
        self._retained_logged: set[str] = set()
        with_charging = self.stages.energy is not None
        self._discovery = (
            [
                Envelope(topic, json.dumps(config).encode(), retain=True, kind="discovery")
                for topic, config in discovery_messages(
                    site, profiles, self.topics, with_charging, with_limit=manages_load(site)
                )
            ]
            if site.mqtt.discovery
            else []
        )
        # The configs of the former topic layout are cleared (empty retained payload) once
        # per installation; the marker file says it was done.
        self._former_discovery = (
            former_discovery_topics(site, profiles, self.topics, with_charging)
            if site.mqtt.discovery
            else []
        )
        self._former_cleared = site.state_dir / f"discovery-layout-2-{site.site.id}"
        self.link = link
        self._refusals = BadgeRefusals()
        self.link.attach(self._on_message, self._send_discovery)

    # -- the poller's sink ---------------------------------------------------------------

    def reading(self, reading: Reading) -> None:
        produced = self._feed(lambda p: p.on_reading(reading))
        charging = self.stages.charging(reading.point)
        state = reading.to_state(charging, self._state_keys.get(reading.point))
        self.publish(Outgoing(reading.point, state))
        self.publish_all(produced)
        if self.load is not None:
            self.load.reading(reading)

    def availability(self, point: str, online: bool, reason: str | None) -> None:
        if online:
            log.info("meter %s: online", point)
        else:
            log.warning("meter %s: offline (%s)", point, reason or "no answer")
        self.publish(Outgoing(point, AvailabilityMessage(online=online)))
        self.publish_all(self._feed(lambda p: p.on_availability(point, online, self.clock())))
        if self.load is not None:
            self.load.availability(point, online)

    # -- output --------------------------------------------------------------------------

    def publish(self, outgoing: Outgoing) -> None:
        """Send one message (QoS 1, kept while the broker is away) and tell the observers."""
        try:
            message = envelope(self.topics, outgoing)
        except ValueError as exc:
            log.error("dropping a %s message: %s", outgoing.kind, exc)
            return
        self.link.send(message)
        for observer in self.stages.all_observers():
            try:
                observer(outgoing)
            except Exception:
                log.exception("observer %r failed on a %s message", observer, outgoing.kind)

    def publish_all(self, outgoing: Iterable[Outgoing]) -> None:
        for item in outgoing:
            self.publish(item)

    def _feed(self, call: Callable[[Processor], Iterable[Outgoing]]) -> list[Outgoing]:
        """Run one event through every processor; a failing processor never stops the others."""
        produced: list[Outgoing] = []
        for processor in self.stages.processors:
            try:
                produced.extend(call(processor))
            except Exception:
                log.exception("processor %s failed", type(processor).__name__)
        return produced

    # -- input from MQTT -----------------------------------------------------------------

    def _send_discovery(self) -> None:
        if self._former_discovery and not self._former_cleared.exists():
            log.info(
                "clearing %d Home Assistant discovery config(s) of the former topic layout",
                len(self._former_discovery),
            )
            for topic in self._former_discovery:
                self.link.send(Envelope(topic, b"", retain=True, kind="discovery"))
            try:
                self._former_cleared.parent.mkdir(parents=True, exist_ok=True)
                self._former_cleared.touch()
            except OSError as exc:  # cleared again next start: harmless
                log.warning("cannot record the discovery clean-up: %s", exc)
        for config in self._discovery:
            self.link.send(config)

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        if topic == self._ha_status:
            if payload.strip() == b"online":
                log.info("Home Assistant is online: re-sending discovery")
                self._send_discovery()
            return
        parsed = parse_topic(self.topics.prefix, topic)
        if parsed is not None and parsed.kind == "badges":
            self._on_badge_list(topic, payload)
            return
        if parsed is not None and parsed.kind == "charger" and parsed.point is not None:
            self._ocpp.remember(parsed.point, payload)
            return
        if parsed is not None and parsed.kind == "command" and parsed.point is not None:
            self._on_command(topic, parsed.point, payload, retained)
            return
        if parsed is not None and parsed.kind == "tempo" and self.stages.tempo is not None:
            self._on_tempo(topic, payload)
            return
        if parsed is None or parsed.kind != "badge" or parsed.point is None:
            log.warning("ignoring message on unexpected topic %r", topic)
            return
        if parsed.point not in self._roles:
            log.warning("badge on %r: no meter %r on this site", topic, parsed.point)
            return
        if retained:
            # A badge is shown once; a retained one would be applied again at every reconnect.
            if topic not in self._retained_logged:
                self._retained_logged.add(topic)
                log.warning("ignoring retained badges on %r: a badge must not be retained", topic)
            return
        limit, now = self._badge_limits[parsed.point], time.monotonic()
        if not limit.allow(now):
            if limit.report_due(now):
                log.warning(
                    "badges on %r faster than %g a second: %d dropped",
                    topic,
                    BADGE_RATE_PER_S,
                    limit.dropped,
                )
                limit.dropped = 0
            return
        point = parsed.point
        try:
            badge = BadgeMessage.from_payload(payload)
        except (ValidationError, ValueError) as exc:
            reason = "; ".join(_reasons(exc))
            log.warning("bad badge message on %r: %s", topic, reason)
            if (event := self._refusals.refused(point, reason, self.clock())) is not None:
                self.publish(Outgoing(point, event))
            return
        log.info("badge %r on %s", badge.badge, point)
        self.publish_all(self._feed(lambda p: p.on_badge(point, badge.badge, self.clock())))

    # -- OCPP chargers ---------------------------------------------------------------------

    def attach_chargers(self, chargers: Chargers) -> None:
        """The central system, made and closed by the app's owner; stopped by `run` before the
        processors close, so that no transaction ends after the sessions' state is saved."""
        self.chargers = chargers
        if self._badges is not None:
            chargers.set_badges(self._badges)

    def ocpp_event(self, event: Event) -> None:
        """An event of the central system (on the loop): published, or a session for the
        energy stage."""
        energy, now = self.stages.energy, self.clock()
        if self.load is not None:
            self.load.ocpp_event(event)
        if isinstance(event, TransactionStarted | TransactionEnded):
            if event.point is None:
                log.warning("transaction %d: no meter for its connector", event.transaction_id)
                return
            if energy is None:
                return
            if isinstance(event, TransactionStarted):
                self.publish_all(
                    energy.open_session(
                        event.point, event.ts, event.badge, event.room, event.transaction_id, now
                    )
                )
            else:
                self.publish_all(
                    energy.close_session(
                        event.point, event.transaction_id, event.end, event.charger_energy_wh, now
                    )
                )
            return
        self.publish_all(self._ocpp.messages(event))
        if self.stages.alerts is not None and isinstance(event, ChargerOnline | ChargerOffline):
            self.stages.alerts.hold("charger_offline", self._ocpp.offline)

    def _on_badge_list(self, topic: str, payload: bytes) -> None:
        try:
            badges, problems = parse_badge_list(json.loads(payload))
        except ValueError as exc:
            log.warning("badge list on %r is not JSON (%s): the previous one is kept", topic, exc)
            return
        for problem in problems:
            log.warning("badge list: %s (left out)", problem)
        log.info("badge list: %d badge(s)", len(badges))
        self._badges = badges
        if self.chargers is not None:
            self.chargers.set_badges(badges)

    def _on_command(self, topic: str, point: str, payload: bytes, retained: bool) -> None:
        if retained:
            # An order is given once; a retained one would be given again at every reconnect.
            log.warning("ignoring a retained command on %r: a command must not be retained", topic)
            return
        limit = self._command_limits.get(point)
        if limit is None:
            log.warning("command on %r: no meter %r on this site", topic, point)
            return
        if not limit.allow(time.monotonic()):
            return
        try:
            command = CommandMessage.from_payload(payload)
        except (ValidationError, ValueError) as exc:
            self._refuse_command(point, "; ".join(_reasons(exc)))
            return
        if self.chargers is None:
            self._refuse_command(point, "no OCPP central system runs")
            return
        log.info("command %s on %s", command.action, point)
        task = asyncio.get_running_loop().create_task(self._command(point, command))
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

    async def _command(self, point: str, command: CommandMessage) -> None:
        assert self.chargers is not None
        try:
            # The charger's answers come back as events (ocpp_event).
            await self.chargers.command(point, command.action, command.badge)
        except CommandError as exc:
            self._refuse_command(point, str(exc))

    def _refuse_command(self, point: str, reason: str) -> None:
        log.warning("command on %s refused: %s", point, reason)
        event = EventMessage(
            ts=self.clock(), event="command_refused", message=f"command refused: {reason}"
        )
        self.publish(Outgoing(point, event))

    def _on_tempo(self, topic: str, payload: bytes) -> None:
        assert self.stages.tempo is not None
        try:
            day, colour = parse_message(payload)
        except ValueError as exc:
            log.warning("bad Tempo colour on %r: %s", topic, exc)
            return
        self.stages.tempo.learn(day, colour)

    def attach_load(self, load: LoadService) -> None:
        """The load management's service, made and closed by the app's owner; stopped by `run`
        before the central system, so that no limit is sent to a closing charger link."""
        self.load = load

    def tick(self, now: datetime) -> None:
        self.publish_all(self._feed(lambda p: p.on_tick(now)))
        if self.load is not None:
            self.load.tick(now)

    # -- lifecycle -----------------------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self.tick(self.clock())

    async def run(self, source: Source, stop: asyncio.Event) -> None:
        """Until `stop` is set (or the source fails): poll, process, publish; then stop the
        processors (their state saved). The link is the owner's to start and to close."""
        workers = [
            asyncio.create_task(source.run(), name="poller"),
            asyncio.create_task(self._ticker(), name="ticker"),
        ]
        stopper = asyncio.create_task(stop.wait(), name="stop")
        try:
            await asyncio.wait([*workers, stopper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in [*workers, stopper]:
                task.cancel()
            await asyncio.gather(*workers, stopper, return_exceptions=True)
            for command in list(self._commands):
                command.cancel()
            await asyncio.gather(*self._commands, return_exceptions=True)
            if self.load is not None:
                await self.load.stop()
            if self.chargers is not None:
                await self.chargers.stop()
            for processor in self.stages.processors:
                try:
                    processor.close()
                except Exception:
                    log.exception("processor %s failed to close", type(processor).__name__)
        for task in workers:
            if not task.cancelled() and (error := task.exception()) is not None:
                raise RuntimeError(f"{task.get_name()} failed: {error}") from error


def _reasons(exc: Exception) -> list[str]:
    if isinstance(exc, ValidationError):
        return [
            f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in exc.errors()
        ]
    return [str(exc)]
