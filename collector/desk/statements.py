"""A stay's statement and the sessions of a period, through the billing library: the same
sessions query, computation and rendering as `irve bill`, so the totals agree to the cent.

The stay's statement holds the ended sessions that started between its arrival and its
departure plus the grace, carrying one of its badges or assigned to it at the desk, and
those that started between its arrival and its departure tagged with its room by the
chargers (a badge since taken off the stay, a lost card replaced): the same as `irve bill
--room R --arrival A --departure D` plus the badges' sessions of the grace. The room tag
does not count in the grace, when the room may already be the next guest's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from collector.billing.source import load_sessions, meter_wh
from collector.billing.statement import (
    SessionUse,
    Statement,
    Stay,
    make_statement,
    statement_number,
)
from collector.commands.bill import hotel_of
from collector.config import SiteConfig
from collector.desk.stays import billing_end, policy_of
from collector.desk.storage import StayRow
from collector.store.influxql import InfluxQL


def _in_room(session: SessionUse, stay: StayRow) -> bool:
    """Tagged with the stay's room by the chargers, before its departure."""
    return session.room == stay.room and session.start < stay.departure


def socket_labels(site: SiteConfig) -> dict[str, str]:
    return {m.id: m.socket.label if m.socket else m.id for m in site.meters}


def stay_statement(
    site: SiteConfig, stay: StayRow, client: InfluxQL, grace: timedelta, issued: datetime
) -> tuple[Statement, list[str]]:
    """The statement and the desk's warnings (sessions still running, meter disagreeing)."""
    tz = site.site.tz
    start, end = stay.arrival, billing_end(stay, grace)
    found, warnings = load_sessions(client, site.site.id, start, end)
    badges = set(stay.badges)
    sessions = [
        s for s in found if s.badge in badges or s.session_id in stay.assigned or _in_room(s, stay)
    ]
    period = Stay(
        stay.room,
        start.astimezone(tz).date(),
        (end - timedelta(seconds=1)).astimezone(tz).date(),
        "room",
        start,
        end,
    )
    statement = make_statement(
        period,
        sessions,
        policy_of(stay),
        meter_wh(client, site.site.id, sessions, site.energy.window_s) if sessions else None,
        labels=socket_labels(site),
        hotel=hotel_of(site),
        number=statement_number(site.site.id, period),
        issued=issued.astimezone(tz).date(),
    )
    return statement, warnings + statement.warnings


@dataclass(frozen=True)
class SessionRow:
    session: SessionUse
    label: str
    end: datetime
    cost_eur: float
    stay: StayRow | None  # whose statement it is on
    candidates: list[StayRow]  # stays it could be assigned to (unbadged, unassigned only)


def period_sessions(
    site: SiteConfig,
    client: InfluxQL,
    start: datetime,
    end: datetime,
    stays: list[StayRow],
    grace: timedelta,
) -> tuple[list[SessionRow], list[str]]:
    sessions, warnings = load_sessions(client, site.site.id, start, end)
    labels = socket_labels(site)
    rows = []
    for s in sessions:
        current = [st for st in stays if st.arrival <= s.start < billing_end(st, grace)]
        owner = next((st for st in stays if s.session_id in st.assigned), None)
        if owner is None and s.badge:
            owner = next((st for st in current if s.badge in st.badges), None)
        if owner is None and s.room:
            owner = next((st for st in current if _in_room(s, st)), None)
        rows.append(
            SessionRow(
                s,
                labels.get(s.point, s.point),
                s.start + timedelta(seconds=s.duration_s),
                sum(cost for _, cost in s.periods.values()),
                owner,
                current if owner is None and not s.badge and not s.room else [],
            )
        )
    return rows, warnings
