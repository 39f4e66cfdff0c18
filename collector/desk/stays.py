"""Stays as reception types them: validation of the form, the badges in force, the billing
period.

A stay's badges are valid from its arrival until its departure plus `desk.grace_h` (the
guest charges before handing the card back); a closed stay's badges no longer are. The
statement covers the sessions that STARTED in that same interval, so nothing charged with
the guest's badge is left out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from collector.billing.statement import Policy, PolicyName
from collector.desk.i18n import FRENCH, Translator
from collector.desk.storage import StayFields, StayRow, Storage, iso

POLICIES: tuple[PolicyName, ...] = ("at_cost", "flat", "allowance")
BADGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
ROOM = re.compile(r"^[\w][\w .'-]{0,15}$")
# How far from today a stay may be registered: a year back (late registration, a statement
# for a past stay), two years ahead (bookings); a year at most.
PAST, FUTURE, LONGEST = timedelta(days=366), timedelta(days=731), timedelta(days=366)


@dataclass(frozen=True)
class Defaults:
    policy: PolicyName
    fee_eur: Decimal
    kwh_per_night: Decimal
    grace: timedelta


def billing_end(stay: StayRow, grace: timedelta) -> datetime:
    return stay.departure + grace


def policy_of(stay: StayRow) -> Policy:
    return Policy(stay.policy, stay.fee_eur, stay.kwh_per_night)  # type: ignore[arg-type]


def local_input(ts: datetime, tz: ZoneInfo) -> str:
    """The value of a `datetime-local` input: local time to the minute."""
    return ts.astimezone(tz).strftime("%Y-%m-%dT%H:%M")


def form_values(stay: StayRow, tz: ZoneInfo) -> dict[str, str]:
    return {
        "room": stay.room,
        "guest": stay.guest,
        "arrival": local_input(stay.arrival, tz),
        "departure": local_input(stay.departure, tz),
        "badges": " ".join(stay.badges),
        "policy": stay.policy,
        "fee_eur": str(stay.fee_eur),
        "kwh_per_night": str(stay.kwh_per_night),
    }


def validate(
    form: Mapping[str, str],
    storage: Storage,
    tz: ZoneInfo,
    now: datetime,
    grace: timedelta,
    stay_id: int | None = None,
    t: Translator = FRENCH,
) -> tuple[StayFields | None, dict[str, str]]:
    """The form's fields checked against each other and against the other stays: (fields,
    {}) or (None, {field: message}), the messages in `t`'s language. Nothing is written here."""
    errors: dict[str, str] = {}
    room = form.get("room", "").strip()
    if not ROOM.match(room):
        errors["room"] = t("Chambre : 1 à 16 lettres, chiffres, espaces ou tirets.")
    guest = form.get("guest", "").strip()
    if len(guest) > 100:
        errors["guest"] = t("Nom du client : 100 caractères au plus.")
    arrival = _local(form.get("arrival", ""), tz, "arrival", errors, t)
    departure = _local(form.get("departure", ""), tz, "departure", errors, t)
    if arrival and departure:
        if departure <= arrival:
            errors["departure"] = t("Le départ doit être après l'arrivée.")
        elif departure - arrival > LONGEST:
            errors["departure"] = t("Un séjour dure un an au plus.")
    for name, value in (("arrival", arrival), ("departure", departure)):
        if value and not now - PAST <= value <= now + FUTURE:
            errors[name] = t(
                "Date hors limites : entre le {first} et le {last}.",
                first=f"{(now - PAST).astimezone(tz):%d/%m/%Y}",
                last=f"{(now + FUTURE).astimezone(tz):%d/%m/%Y}",
            )
    badges = tuple(dict.fromkeys(form.get("badges", "").replace(",", " ").split()))
    bad = [b for b in badges if not BADGE.match(b)]
    if bad:
        errors["badges"] = t(
            "Badge {badge} : 1 à 64 lettres, chiffres, points, tirets ou deux-points.",
            badge=repr(bad[0]),
        )
    policy = form.get("policy", "")
    if policy not in POLICIES:
        errors["policy"] = t("Tarification : au coût, forfait ou kWh inclus.")
    fee = _decimal(form.get("fee_eur", "0"), "fee_eur", errors, Decimal(1000), t)
    per_night = _decimal(form.get("kwh_per_night", "0"), "kwh_per_night", errors, Decimal(1000), t)
    if errors or arrival is None or departure is None:
        return None, errors
    # Badges are valid until departure + grace: stays that far apart can still share one.
    for other in storage.overlapping(arrival - grace, departure + grace):
        if other.id == stay_id:
            continue
        if other.room == room and other.arrival < departure and arrival < other.departure:
            errors["arrival"] = t(
                "La chambre {room} est déjà occupée par le séjour n° {id} du {arrival} au "
                "{departure}.",
                room=room,
                id=other.id,
                arrival=f"{other.arrival.astimezone(tz):%d/%m/%Y %H:%M}",
                departure=f"{other.departure.astimezone(tz):%d/%m/%Y %H:%M}",
            )
        taken = sorted(set(badges) & set(other.badges))
        valid_together = other.arrival < departure + grace and arrival < other.departure + grace
        if taken and other.closed is None and valid_together:
            errors["badges"] = t(
                "Le badge {badge} est déjà donné à la chambre {room} (séjour n° {id}) "
                "jusqu'au {until}.",
                badge=taken[0],
                room=other.room,
                id=other.id,
                until=f"{(other.departure + grace).astimezone(tz):%d/%m/%Y %H:%M}",
            )
    if errors:
        return None, errors
    return StayFields(room, guest, arrival, departure, badges, policy, fee, per_night), errors


def badges_in_force(stays: list[StayRow], now: datetime, grace: timedelta) -> list[dict[str, str]]:
    """The retained `badges` list: each badge of the stays in force, with room and validity."""
    out = []
    for stay in stays:
        until = billing_end(stay, grace)
        if stay.closed is None and stay.arrival <= now < until:
            out += [{"badge": b, "room": stay.room, "until": iso(until)} for b in stay.badges]
    return sorted(out, key=lambda item: item["badge"])


def _local(
    text: str, tz: ZoneInfo, name: str, errors: dict[str, str], t: Translator
) -> datetime | None:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        errors[name] = t("Date et heure attendues (AAAA-MM-JJ HH:MM).")
        return None
    return value.replace(tzinfo=tz) if value.tzinfo is None else value


def _decimal(
    text: str, name: str, errors: dict[str, str], highest: Decimal, t: Translator
) -> Decimal:
    try:
        value = Decimal((text or "0").strip().replace(",", "."))
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or not 0 <= value <= highest:
        errors[name] = t("Un nombre de 0 à {highest} est attendu.", highest=highest)
        return Decimal(0)
    return value
