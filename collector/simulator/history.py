"""Demo history: weeks of a simulated site computed in seconds, through the live code.

The simulator's model advances in coarse steps (60 s by default instead of a poll a second);
each step's values become a `Reading` that goes through the collector's `EnergyProcessor`
(tariff periods, energy windows, sessions) exactly as live readings do, each day's
subscription share comes from the collector's `SubscriptionProcessor`, and every message they
produce becomes line protocol through the catalogue's `to_line`, as the ingestor writes it. The
dashboards therefore show on the first start what they will show for real data.

Guests badge in: a session that starts without a badge gets a room badge, as when the guest
presents the room card at the socket's RFID reader during the charge.

Every point carries the tag `demo=1` (an addition to the SPEC schema): simulated history is
never mistaken for the site's real data and can be deleted on its own
(`DROP SERIES WHERE demo = '1'`, docs/energy-and-billing.md).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from collector.config import SiteConfig
from collector.energy.processor import EnergyProcessor
from collector.meters.reading import Reading, state_keys
from collector.simulator.model import SiteModel
from collector.tariffs.subscription import SubscriptionProcessor
from collector.wire import lines
from collector.wire.kinds import Outgoing, kind_of
from collector.wire.messages import SessionMessage

DEFAULT_STEP_S = 60.0
DEMO_TAG = ("demo", "1")
# The end of a line's tags: its first space not escaped (tag values escape spaces as `\ `).
_TAGS_END = re.compile(r"(?<!\\) ")
ROOMS = tuple(f"chambre-{floor}{room:02d}" for floor in (1, 2, 3) for room in range(1, 13))


@dataclass
class HistoryCounts:
    readings: int = 0
    energy: int = 0
    sessions: int = 0
    events: int = 0
    subscriptions: int = 0

    @property
    def total(self) -> int:
        return self.readings + self.energy + self.sessions + self.events + self.subscriptions

    def count(self, kind: str) -> None:
        """One more message of `kind` (a name of collector.wire.kinds.KINDS)."""
        if kind == "energy":
            self.energy += 1
        elif kind == "session":
            self.sessions += 1
        elif kind == "event":
            self.events += 1
        elif kind == "subscription":
            self.subscriptions += 1


def history_lines(
    site: SiteConfig,
    phases_of: Mapping[str, int],
    start: datetime,
    end: datetime,
    *,
    seed: int = 0,
    step_s: float = DEFAULT_STEP_S,
    counts: HistoryCounts | None = None,
) -> Iterator[str]:
    """Line protocol for every reading, energy window, session, index event and day's
    subscription share between `start` and `end` (aware datetimes). `phases_of`: meter id ->
    phases its profile measures."""
    counts = counts if counts is not None else HistoryCounts()
    model = SiteModel(site, phases_of, seed=seed, start=start, step_s=step_s)
    rooms = random.Random(seed)
    site_id = site.site.id
    # The live energy stage without its state file (its state stays in memory): a one-shot
    # batch has nothing to resume, and it must not touch the running collector's state.
    energy = EnergyProcessor(site)
    subscription = SubscriptionProcessor(site)  # the same: its state in memory only
    # The day `end` falls in is the collector's to publish when it starts (the demo usually ends
    # now): both would be two points of one day, which the month's subscription adds up.
    last_day_start = datetime.combine(end.astimezone(site.site.tz).date(), time(0), site.site.tz)
    step = timedelta(seconds=step_s)
    while model.now + step <= end:
        model.step()
        now = model.now
        for meter in site.meters:
            reading = Reading(meter.id, now, dict(model.values(meter.id)))
            produced = list(energy.on_reading(reading))
            if any(_unbadged_start(out) for out in produced):
                produced += energy.on_badge(meter.id, rooms.choice(ROOMS), now)
            state = reading.to_state(energy.charging(meter.id), state_keys(site, meter))
            line = lines.reading(site_id, meter.id, state)
            if line is not None:
                counts.readings += 1
                yield demo_tagged(line)
            yield from _lines(site_id, produced, counts)
        yield from _lines(site_id, energy.on_tick(now), counts)
        if now < last_day_start:
            yield from _lines(site_id, subscription.on_tick(now), counts)


def _unbadged_start(out: Outgoing) -> bool:
    message = out.message
    return isinstance(message, SessionMessage) and message.event == "start" and not message.badge


def _lines(site_id: str, produced: Iterable[Outgoing], counts: HistoryCounts) -> Iterator[str]:
    for out in produced:
        kind = kind_of(out.message)
        if kind.to_line is None:
            continue
        counts.count(kind.name)
        line = kind.to_line(site_id, out.point or "", out.message, 0)
        if line is not None:
            yield demo_tagged(line)


def demo_tagged(line: str) -> str:
    """A line-protocol line with the demo tag added after its own tags."""
    match = _TAGS_END.search(line)
    if match is None:
        raise ValueError(f"not a line-protocol line: {line!r}")
    key, value = DEMO_TAG
    return f"{line[: match.start()]},{key}={value}{line[match.start() :]}"
