"""The subscription (abonnement): a fixed monthly cost by subscribed power, prorated per day.

No clock, file or network here (the bundled table is read by `regulated`). A local day bears
the month's subscription / the number of days of its month, so the days of a month add up to
its subscription. The figure is the site's typed `tariff.subscription` row in force (the first
also covers earlier days, as price rows), else, with `tariff.supplier`, the table's for the
contract's option and `kva`. A day the table has no figure for is said, never guessed (the
table leaves out what no cited source gives, e.g. every subscription from 2026-08-01).

`SubscriptionProcessor` publishes each local day's share once (retained
`irve/{site}/subscription`, measurement `subscription`), never mixed into a kWh price.
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from collector.config import SiteConfig, TariffSettings
from collector.pipeline import MemoryStateStore, Processor, StateStore
from collector.tariffs import regulated
from collector.wire.kinds import Outgoing
from collector.wire.messages import SubscriptionMessage

log = logging.getLogger(__name__)

TYPED = "site file"
CATCH_UP_DAYS = 31  # days published again after the collector was stopped, at most


@dataclass(frozen=True)
class DayShare:
    """One local day's share of the subscription, or why it is unknown (`problem`)."""

    day: date
    kva: int | None
    per_month: Decimal | None
    cost_eur: Decimal | None
    source: str
    problem: str | None = None


def days_in_month(day: date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


def day_share(settings: TariffSettings, day: date, kva: int | None = None) -> DayShare:
    """The site's own subscription on a day; with `kva`, the table's for that power instead
    (what another subscribed power would cost)."""
    if kva is None and settings.subscription:
        rows = settings.subscription
        row = rows[0]
        for candidate in rows:
            if candidate.since <= day:
                row = candidate
        monthly = row.monthly
        return DayShare(day, settings.kva, monthly, monthly / days_in_month(day), TYPED)
    power = settings.kva if kva is None else kva
    if power is None or (kva is None and settings.supplier is None):
        return DayShare(
            day, power, None, None, TYPED, "no subscription: type tariff.subscription rows"
        )
    try:
        sub = regulated.subscription_at(settings.option, power, day)
    except regulated.RegulatedError as exc:
        return DayShare(day, power, None, None, regulated.SUPPLIER, str(exc))
    monthly = sub.monthly
    return DayShare(day, power, monthly, monthly / days_in_month(day), sub.source.key)


@dataclass(frozen=True)
class Total:
    """The subscription over days: the sum of the known days, and the days without a figure."""

    cost_eur: Decimal
    known_days: int
    missing: tuple[DayShare, ...]

    @property
    def problems(self) -> list[str]:
        """Each distinct reason once, with the first day it applies to."""
        seen: dict[str, date] = {}
        for share in self.missing:
            if share.problem is not None:
                seen.setdefault(share.problem, share.day)
        return [f"from {day}: {problem}" for problem, day in seen.items()]


def total(settings: TariffSettings, days: Iterable[date], kva: int | None = None) -> Total:
    cost = Decimal(0)
    known = 0
    missing: list[DayShare] = []
    for day in days:
        share = day_share(settings, day, kva)
        if share.cost_eur is None:
            missing.append(share)
        else:
            cost += share.cost_eur
            known += 1
    return Total(cost, known, tuple(missing))


class SubscriptionProcessor(Processor):
    """Publishes each local day's subscription share once the day has begun; after a stop, the
    days missed (at most CATCH_UP_DAYS) too. Publishing a day twice is harmless: the same
    retained payload, the same database point."""

    def __init__(self, site: SiteConfig, store: StateStore | None = None) -> None:
        self.settings = site.tariff
        self.tz = site.site.tz
        self.store: StateStore = store if store is not None else MemoryStateStore()
        last = self.store.load().get("last_day")
        self.last_day: date | None = date.fromisoformat(last) if last else None
        self.warned: set[str] = set()

    def on_tick(self, now: datetime) -> Iterable[Outgoing]:
        today = now.astimezone(self.tz).date()
        if self.last_day is not None and self.last_day >= today:
            return ()
        first = today
        if self.last_day is not None:
            first = max(self.last_day + timedelta(days=1), today - timedelta(days=CATCH_UP_DAYS))
        out: list[Outgoing] = []
        day = first
        while day <= today:
            share = day_share(self.settings, day)
            if share.cost_eur is None or share.per_month is None:
                if share.problem not in self.warned:
                    log.warning("subscription from %s not published: %s", day, share.problem)
                    self.warned.add(share.problem or "")
            else:
                out.append(Outgoing(None, self.message(share)))
            day += timedelta(days=1)
        self.last_day = today
        self.store.submit({"last_day": today.isoformat()})
        return out

    def message(self, share: DayShare) -> SubscriptionMessage:
        assert share.cost_eur is not None and share.per_month is not None
        return SubscriptionMessage(
            ts=datetime.combine(share.day, time(0), tzinfo=self.tz),
            day=share.day,
            kva=share.kva,
            option=self.settings.option,
            per_month_eur=float(share.per_month),
            cost_eur=float(round(share.cost_eur, 9)),
            source=share.source,
        )

    def close(self) -> None:
        if not self.store.close(5.0):
            log.error(
                "cannot save the subscription state to %s on stopping (%s): days may be "
                "published again after the restart",
                self.store.where,
                self.store.failure or "timed out",
            )
