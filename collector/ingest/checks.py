"""What the ingestor refuses beyond the message models (pure): numbers no site can produce,
times InfluxDB cannot store, keys and strings InfluxDB would refuse or store unreadable.

Each check raises ValueError with a reason of the form `field: what is wrong`, which makes the
message a dead letter. The bounds are generous on purpose (docs/ingest.md): they catch garbage
and overflows, not a meter that reads a little high, so that a real reading is never refused.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from collector.wire.messages import (
    AlertMessage,
    ConnectorMessage,
    EnergyMessage,
    EventMessage,
    LimitMessage,
    SessionMessage,
    StateMessage,
    SubscriptionMessage,
)
from collector.wire.times import EPOCH

# A whole site, however large (a hotel draws well under 1 MW).
MAX_POWER_W = 1e8
MAX_CURRENT_A = 1e5
MAX_VOLTAGE_V = 1e6  # meters behind voltage transformers report the primary side
MAX_FREQUENCY_HZ = 1000.0
# Meters read a power factor a hair over 1 at low load; beyond this it is garbage.
MAX_POWER_FACTOR = 1.1
# A 32-bit counter of 1 kWh steps wraps at 4.3e12 Wh.
MAX_INDEX_WH = 1e13
MAX_PHASES = 3
MAX_PRICE_EUR_KWH = 100.0
# One coarse index step (1 kWh) may land in a short window when the index ticks.
INDEX_STEP_SLACK_WH = 1000.0
# Costs are energy x price to 9 decimals; half a cent tells a rounding from a wrong cost.
COST_TOLERANCE_EUR = 0.005
MAX_SESSION_S = 366 * 86400
# Alert values and event details: power, current, indexes, counts, durations.
MAX_DETAIL = 1e15
MAX_KEY_CHARS = 64

# InfluxDB stores nanoseconds since the epoch in a signed 64-bit integer.
FIRST_TIME = EPOCH + timedelta(microseconds=-(2**63) // 1000 + 1)
LAST_TIME = EPOCH + timedelta(microseconds=(2**63 - 1) // 1000)

_CONTROL = frozenset(chr(c) for c in range(32)) | {"\x7f"}


def _range(name: str, value: float | None, low: float, high: float, unit: str = "") -> None:
    if value is not None and not low <= value <= high:
        raise ValueError(f"{name}: {value:.10g}{unit} is outside {low:.10g}..{high:.10g}{unit}")


def _time(name: str, value: datetime | None) -> None:
    if value is not None and not FIRST_TIME <= value <= LAST_TIME:
        raise ValueError(
            f"{name}: {value.isoformat()} is outside what InfluxDB can store "
            f"({FIRST_TIME:%Y-%m-%d} .. {LAST_TIME:%Y-%m-%d})"
        )


def _text(name: str, value: str | None) -> None:
    # InfluxDB stores a NUL as it is, and no client or dashboard shows it back faithfully.
    if value is not None and "\x00" in value:
        raise ValueError(f"{name}: contains a NUL character")


def _key(name: str, key: str) -> None:
    """A field key taken from the payload (event details)."""
    if not key:
        raise ValueError(f"{name}: empty key")
    if len(key) > MAX_KEY_CHARS:
        raise ValueError(f"{name}: key {key[:20]!r}... is longer than {MAX_KEY_CHARS} characters")
    if key == "time" or key.startswith("_"):
        # InfluxDB 1.x takes a `time` field and never shows it; 2.x and 3.x reserve `_...`.
        raise ValueError(f"{name}: key {key!r} is reserved by InfluxDB")
    if not _CONTROL.isdisjoint(key):
        raise ValueError(f"{name}: key {key!r} contains a control character")


def _phases(name: str, values: list[float | None] | None, limit: float, unit: str) -> None:
    if values is None:
        return
    if len(values) > MAX_PHASES:
        raise ValueError(f"{name}: {len(values)} values, at most {MAX_PHASES} phases")
    for i, value in enumerate(values):
        _range(f"{name}.{i}", value, -limit, limit, unit)


def state(msg: StateMessage) -> None:
    _time("ts", msg.ts)
    _range("power_w", msg.power_w, -MAX_POWER_W, MAX_POWER_W, " W")
    _range("current_a", msg.current_a, -MAX_CURRENT_A, MAX_CURRENT_A, " A")
    _range("voltage_v", msg.voltage_v, 0, MAX_VOLTAGE_V, " V")
    _range("energy_wh", msg.energy_wh, 0, MAX_INDEX_WH, " Wh")
    _range("export_energy_wh", msg.export_energy_wh, 0, MAX_INDEX_WH, " Wh")
    _range("power_factor", msg.power_factor, -MAX_POWER_FACTOR, MAX_POWER_FACTOR)
    _range("frequency_hz", msg.frequency_hz, 0, MAX_FREQUENCY_HZ, " Hz")
    _phases("currents_a", msg.currents_a, MAX_CURRENT_A, " A")
    _phases("voltages_v", msg.voltages_v, MAX_VOLTAGE_V, " V")
    _range("rated_current_a", msg.rated_current_a, 0, MAX_CURRENT_A, " A")
    _range("limit_w", msg.limit_w, 0, MAX_POWER_W, " W")
    _range("warning_w", msg.warning_w, 0, MAX_POWER_W, " W")


def _energy_for(seconds: float) -> float:
    """The most energy a site can draw in `seconds`."""
    return MAX_POWER_W * seconds / 3600 + INDEX_STEP_SLACK_WH


def _cost(name: str, cost: float, energy_wh: float, price_eur_kwh: float) -> None:
    expected = energy_wh / 1000 * price_eur_kwh
    if abs(cost - expected) > COST_TOLERANCE_EUR:
        raise ValueError(
            f"{name}: {cost:g} EUR is not energy x price ({energy_wh:g} Wh x "
            f"{price_eur_kwh:g} EUR/kWh = {expected:.6f} EUR)"
        )


def energy(msg: EnergyMessage) -> None:
    _time("start", msg.start)
    _time("end", msg.end)
    if msg.end < msg.start:
        raise ValueError(f"end: {msg.end.isoformat()} is before start {msg.start.isoformat()}")
    seconds = (msg.end - msg.start).total_seconds()
    _range("energy_wh", msg.energy_wh, 0, _energy_for(seconds), f" Wh in {seconds:g} s")
    _range("price_eur_kwh", msg.price_eur_kwh, 0, MAX_PRICE_EUR_KWH, " EUR/kWh")
    _cost("cost_eur", msg.cost_eur, msg.energy_wh, msg.price_eur_kwh)
    _range("index_start_wh", msg.index_start_wh, 0, MAX_INDEX_WH, " Wh")
    _range("index_end_wh", msg.index_end_wh, 0, MAX_INDEX_WH, " Wh")


def session(msg: SessionMessage) -> None:
    _time("ts", msg.ts)
    _time("start", msg.start)
    _text("session_id", msg.session_id)
    _text("badge", msg.badge)
    _text("room", msg.room)
    _range("duration_s", msg.duration_s, 0, MAX_SESSION_S, " s")
    if msg.start is not None and msg.start > msg.ts:
        raise ValueError(f"start: {msg.start.isoformat()} is after ts {msg.ts.isoformat()}")
    most = _energy_for(msg.duration_s)
    _range("energy_wh", msg.energy_wh, 0, most, f" Wh in {msg.duration_s:g} s")
    _range("cost_eur", msg.cost_eur, 0, most / 1000 * MAX_PRICE_EUR_KWH, " EUR")
    _range("max_power_w", msg.max_power_w, 0, MAX_POWER_W, " W")
    _range("charger_energy_wh", msg.charger_energy_wh, 0, most, f" Wh in {msg.duration_s:g} s")
    for period, total in msg.periods.items():
        _range(f"periods.{period}.energy_wh", total.energy_wh, 0, most, " Wh")
        _range(
            f"periods.{period}.cost_eur",
            total.cost_eur,
            0,
            most / 1000 * MAX_PRICE_EUR_KWH,
            " EUR",
        )


def alert(msg: AlertMessage) -> None:
    _time("ts", msg.ts)
    _text("point", msg.point)
    _text("message", msg.message)
    _range("value", msg.value, -MAX_DETAIL, MAX_DETAIL)
    _range("limit", msg.limit, -MAX_DETAIL, MAX_DETAIL)


def event(msg: EventMessage) -> None:
    _time("ts", msg.ts)
    _text("event", msg.event)
    _text("message", msg.message)
    for key, value in msg.details.items():
        _key("details", key)
        if isinstance(value, float):
            _range(f"details.{key}", value, -MAX_DETAIL, MAX_DETAIL)


def connector(msg: ConnectorMessage) -> None:
    _time("ts", msg.ts)
    _text("charger", msg.charger)
    _text("error_code", msg.error_code)


MAX_SUBSCRIPTION_EUR_MONTH = 10_000.0  # far above any 36 kVA (or yellow) contract


def subscription(msg: SubscriptionMessage) -> None:
    _time("ts", msg.ts)
    _range("per_month_eur", msg.per_month_eur, 0, MAX_SUBSCRIPTION_EUR_MONTH, " EUR")
    # A day bears the month / its days: at most a 28-day February's share.
    _range("cost_eur", msg.cost_eur, 0, msg.per_month_eur / 28 * 1.000001, " EUR")
    _text("source", msg.source)


def limit(msg: LimitMessage) -> None:
    _time("ts", msg.ts)


# Per message kind (collector.wire.kinds); a kind without an entry has no range to check.
BY_KIND: dict[str, Callable[[Any], None]] = {
    "state": state,
    "energy": energy,
    "session": session,
    "alert": alert,
    "event": event,
    "connector": connector,
    "subscription": subscription,
    "limit": limit,
}
