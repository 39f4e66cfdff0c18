"""Energy per aligned window from differences of a meter's import index.

Energy never comes from integrating power: each pair of consecutive readings contributes the
index difference, shared over the time between them in proportion to time. Windows are
aligned to the epoch (UTC) every `window_s` seconds and also cut at every tariff boundary, so
a window has one period and one price.

Index anomalies (policy, see docs/energy-and-billing.md):
- index down by more than a jitter: a 32-bit wrap if adding 2^32 counts (for a plausible
  count size) gives a physically possible difference; otherwise a counter reset or meter
  replacement: the step's energy is ESTIMATED from measured power (mean of both readings x
  elapsed, capped at what the socket could draw) and the index is rebased.
- index up by more than the socket could physically draw in the elapsed time (rated current x
  voltage x phases, with margin): the jump is dropped, the step is estimated from power, and
  the index rebased. Meters refresh their energy register every few seconds, at moments the
  polls do not see: a rise holds the energy drawn since the register's previous refresh, which
  happened after the last reading that still showed the older index. So the time allowed
  counts from that reading (one poll before the index last changed), but at most
  REFRESH_MAX_S before the previous reading: an idle socket's still index must not make a
  later glitch possible. An estimate replacing a rejected step covers the same stretch the
  index stood still (counted as nothing so far), not only the last poll's interval.
- readings further apart than `gap_s` (restart, outage): the index difference is real but its
  timing is not, so it is shared in proportion to time and every window it touches is flagged.
Each anomaly is logged and returned as an EventMessage.

Coarse indexes (0.1 or 1 kWh steps): between index ticks, measured power provisionally fills
windows, capped at one step since the last tick; the next tick pays back what was already
emitted. So the windows add up exactly to the index difference at every tick.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from collector.energy.tariff import Tariff
from collector.wire.messages import EnergyMessage, EventMessage, Period
from collector.wire.times import aligned_end

log = logging.getLogger(__name__)

VOLTAGE_MAX_V = 253.0  # 230 V + 10 % (EN 50160)
MARGIN = 1.25  # on top of the physical maximum, for meter and clock tolerances
JITTER_WH = 0.5  # a float32 index may read a hair lower; not a reset
REFRESH_MAX_S = 60.0  # slowest energy-register refresh allowed for when judging a rise
# Where a counter wraps, when the meter's profile does not say: a 32-bit register counting
# 0.001 .. 1000 Wh.
GUESSED_SPANS_WH = tuple(2**32 * size for size in (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0))
QUANTA_WH = (1000.0, 100.0, 10.0)  # coarse index steps we recognise


def window_end(start: datetime, tariff: Tariff, window_s: int) -> datetime:
    """End of the window opening at `start`: the next aligned mark or tariff boundary."""
    return min(aligned_end(start, window_s), tariff.next_boundary(start))


def cost_eur(energy_wh: float, price_eur_kwh: float) -> float:
    """Cost of one window, kept to 9 decimals: bills round once, on each line's total, and a
    month of 60 s windows at constant power (43,200 equal rounding errors) stays within
    0.0001 EUR of the exact sum, where 6 decimals could drift by 2 cents."""
    return round(energy_wh / 1000 * price_eur_kwh, 9)


@dataclass
class Piece:
    """Energy drawn during [start, end), entirely inside one window (one period, one price)."""

    start: datetime
    end: datetime
    energy_wh: float
    period: Period
    price_eur_kwh: Decimal
    estimated: bool

    @property
    def cost_eur(self) -> Decimal:
        """kWh x price in Decimal (the binary energy taken exactly): sessions add these up
        without the drift of a float running sum."""
        return Decimal(self.energy_wh) / 1000 * self.price_eur_kwh


@dataclass
class Window:
    start: datetime
    end: datetime
    period: Period
    price_eur_kwh: Decimal  # as the tariff has it; a float only on the wire
    energy_wh: float = 0.0
    index_start_wh: float | None = None
    estimated: bool = False
    tempo_fallback: bool = False  # priced at the Tempo fallback colour: the day's was unknown

    def message(self, index_end_wh: float | None) -> EnergyMessage:
        energy = round(self.energy_wh, 6)
        return EnergyMessage(
            start=self.start,
            end=self.end,
            energy_wh=energy,
            period=self.period,
            price_eur_kwh=float(self.price_eur_kwh),
            cost_eur=cost_eur(energy, float(self.price_eur_kwh)),
            index_start_wh=_round(self.index_start_wh),
            index_end_wh=_round(index_end_wh),
            estimated=self.estimated or self.tempo_fallback,
            tempo_fallback=True if self.tempo_fallback else None,
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclass
class Step:
    """What one reading produced."""

    windows: list[EnergyMessage] = field(default_factory=list)
    pieces: list[Piece] = field(default_factory=list)
    events: list[EventMessage] = field(default_factory=list)


class PointEnergy:
    """Index -> energy windows for one metering point. Pure: time comes with the readings."""

    def __init__(
        self,
        point: str,
        tariff: Tariff,
        window_s: int,
        max_power_w: float,
        gap_s: float,
        counter_spans_wh: tuple[float, ...] = GUESSED_SPANS_WH,
    ) -> None:
        self.point = point
        self.counter_spans_wh = counter_spans_wh  # () for a float index, which never wraps
        self.tariff = tariff
        self.window_s = window_s
        self.max_power_w = max_power_w
        self.gap_s = gap_s
        self.last_ts: datetime | None = None
        self.last_index: float | None = None
        # First reading that showed last_index, and the reading just before it (the register's
        # refresh happened between the two): a rise is judged against the time since then.
        self.changed_ts: datetime | None = None
        self.before_change_ts: datetime | None = None
        self.last_power: float | None = None
        self.window: Window | None = None
        self.provisional_wh = 0.0  # emitted from power, not yet covered by an index tick
        self.quantum_wh = QUANTA_WH[0]  # coarsest step all indexes seen are multiples of
        self.tick_seen = False  # a tick since start: the next one is exactly one step away

    # ---- public -----------------------------------------------------------------------------

    def update(self, ts: datetime, index_wh: float | None, power_w: float | None) -> Step:
        step = Step()
        if index_wh is None:
            return step
        # Aware datetimes of one zone subtract as wall clocks (Python's rule): in UTC, an
        # interval across a DST change is its real length.
        ts = ts.astimezone(UTC)
        if self.last_ts is None or self.last_index is None or self.window is None:
            self._observe_quantum(index_wh)
            self._restart_at(ts, index_wh, power_w)
            return step
        if ts <= self.last_ts:
            log.debug("%s: reading at %s not after %s, ignored", self.point, ts, self.last_ts)
            return step
        self._observe_quantum(index_wh)
        elapsed = (ts - self.last_ts).total_seconds()
        since_refresh = (ts - (self.before_change_ts or self.last_ts)).total_seconds()
        unchanged_s = min(since_refresh, elapsed + REFRESH_MAX_S)
        limit = self.max_power_w * MARGIN * unchanged_s / 3600 + self._quantum() + 1.0
        still_s = min((ts - (self.changed_ts or self.last_ts)).total_seconds(), unchanged_s)
        delta = index_wh - self.last_index
        estimated = elapsed > self.gap_s
        interpolate = True
        new_index = index_wh
        if delta < -JITTER_WH:
            wrapped = self._wrapped(delta, limit)
            if wrapped is not None:
                energy = wrapped
                self._event(step, ts, "index_wrap", "energy counter wrapped around", index_wh)
            else:
                energy = self._estimate(power_w, still_s, limit)
                estimated, interpolate = True, False
                self._event(
                    step,
                    ts,
                    "index_reset",
                    "energy index went down (counter reset or meter replaced); "
                    f"{energy:.1f} Wh estimated from power",
                    index_wh,
                    self._rebase(energy),
                )
        elif delta < 0:
            energy, new_index = 0.0, self.last_index  # jitter: keep the higher index
        elif delta > limit:
            energy = self._estimate(power_w, still_s, limit)
            estimated, interpolate = True, False
            self._event(
                step,
                ts,
                "index_jump",
                f"energy index jumped {delta:.0f} Wh in {unchanged_s:.0f} s, more than the socket can "
                f"draw; {energy:.1f} Wh estimated from power",
                index_wh,
                self._rebase(energy),
            )
        else:
            energy = self._reconcile(delta, power_w, elapsed)
        if estimated and elapsed > self.gap_s:
            self._event(
                step,
                ts,
                "energy_estimated",
                f"{elapsed:.0f} s without readings; {energy:.1f} Wh shared over the gap "
                "in proportion to time",
                index_wh,
                {"gap_start": self.last_ts.isoformat(), "energy_wh": round(energy, 3)},
            )
        index_a = self.last_index if interpolate else None
        index_b = new_index if interpolate else None
        self._spread(self.last_ts, ts, energy, estimated, index_a, index_b, step)
        if new_index != self.last_index:
            self.changed_ts, self.before_change_ts = ts, self.last_ts
        self.last_ts, self.last_index, self.last_power = ts, new_index, power_w
        return step

    def to_dict(self) -> dict[str, Any]:
        w = self.window
        return {
            "last_ts": self.last_ts.isoformat() if self.last_ts else None,
            "last_index": self.last_index,
            "changed_ts": self.changed_ts.isoformat() if self.changed_ts else None,
            "before_change_ts": self.before_change_ts.isoformat()
            if self.before_change_ts
            else None,
            "last_power": self.last_power,
            "provisional_wh": self.provisional_wh,
            "quantum_wh": self.quantum_wh,
            "tick_seen": self.tick_seen,
            "window": None
            if w is None
            else {
                "start": w.start.isoformat(),
                "end": w.end.isoformat(),
                "period": w.period,
                "price_eur_kwh": float(w.price_eur_kwh),
                "energy_wh": w.energy_wh,
                "index_start_wh": w.index_start_wh,
                "estimated": w.estimated,
                **({"tempo_fallback": True} if w.tempo_fallback else {}),
            },
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.last_ts = datetime.fromisoformat(data["last_ts"]) if data.get("last_ts") else None
        self.last_index = data.get("last_index")
        changed = data.get("changed_ts")
        self.changed_ts = datetime.fromisoformat(changed) if changed else self.last_ts
        before = data.get("before_change_ts")
        self.before_change_ts = datetime.fromisoformat(before) if before else self.changed_ts
        self.last_power = data.get("last_power")
        self.provisional_wh = float(data.get("provisional_wh", 0.0))
        self.quantum_wh = float(data.get("quantum_wh", QUANTA_WH[0]))
        self.tick_seen = bool(data.get("tick_seen", False))
        w = data.get("window")
        self.window = (
            None
            if w is None
            else Window(
                start=datetime.fromisoformat(w["start"]),
                end=datetime.fromisoformat(w["end"]),
                period=w["period"],
                # The float's shortest text is the price as typed (0.1952), never its binary noise.
                price_eur_kwh=Decimal(repr(float(w["price_eur_kwh"]))),
                energy_wh=float(w["energy_wh"]),
                index_start_wh=w["index_start_wh"],
                estimated=bool(w["estimated"]),
                tempo_fallback=bool(w.get("tempo_fallback", False)),
            )
        )

    # ---- internals --------------------------------------------------------------------------

    def _restart_at(self, ts: datetime, index_wh: float, power_w: float | None) -> None:
        self.last_ts, self.last_index, self.last_power = ts, index_wh, power_w
        self.changed_ts = self.before_change_ts = ts
        self.window = self._open(ts, index_wh)

    def _open(self, start: datetime, index_wh: float | None) -> Window:
        end = window_end(start, self.tariff, self.window_s)
        period, price = self.tariff.rate_at(start)
        fallback = self.tariff.fallback_at(start)
        return Window(start, end, period, price, index_start_wh=index_wh, tempo_fallback=fallback)

    def _quantum(self) -> float:
        return self.quantum_wh if self.quantum_wh >= QUANTA_WH[-1] else 0.0

    def _observe_quantum(self, index_wh: float) -> None:
        while self.quantum_wh >= QUANTA_WH[-1]:
            steps = index_wh / self.quantum_wh
            if abs(steps - round(steps)) * self.quantum_wh < 1e-3:
                return
            self.quantum_wh /= 10

    def _wrapped(self, delta: float, limit: float) -> float | None:
        for span in self.counter_spans_wh:
            wrapped = delta + span
            if 0 <= wrapped <= limit:
                return wrapped
        return None

    def _estimate(self, power_w: float | None, still_s: float, limit: float) -> float:
        """Energy drawn while the index stood still, less what power already filled in."""
        powers = [p for p in (self.last_power, power_w) if p is not None and p > 0]
        if not powers:
            return 0.0
        drawn = sum(powers) / len(powers) * still_s / 3600
        return max(0.0, min(drawn - self.provisional_wh, limit))

    def _rebase(self, estimated_wh: float) -> dict[str, float | str | bool | None]:
        """Forget the old index's phase; the details say what was estimated or written off."""
        dropped, self.provisional_wh, self.tick_seen = self.provisional_wh, 0.0, False
        return {"estimated_wh": round(estimated_wh, 6), "provisional_dropped_wh": dropped}

    def _reconcile(self, delta: float, power_w: float | None, elapsed: float) -> float:
        """Index difference minus what power already filled in, plus power between ticks."""
        energy = delta - self.provisional_wh
        if energy >= 0:
            self.provisional_wh = 0.0
        else:  # provisional ran ahead (quantum mis-guessed): hold back until paid back
            self.provisional_wh, energy = -energy, 0.0
        if delta > 0:
            self.tick_seen = True
            return energy
        quantum = self._quantum()
        if quantum and self.tick_seen and power_w is not None and power_w > 0:
            room = max(0.0, quantum - self.provisional_wh)
            filled = min(power_w * elapsed / 3600, room)
            self.provisional_wh += filled
            energy += filled
        return energy

    def _spread(
        self,
        a: datetime,
        b: datetime,
        energy: float,
        estimated: bool,
        index_a: float | None,
        index_b: float | None,
        step: Step,
    ) -> None:
        total = (b - a).total_seconds()
        assigned = 0.0
        t = a
        while t < b:
            window = self.window
            assert window is not None
            end = min(window.end, b)
            share = energy - assigned if end == b else energy * (end - t).total_seconds() / total
            assigned += share
            window.energy_wh += share
            window.estimated = window.estimated or (estimated and share > 0)
            step.pieces.append(Piece(t, end, share, window.period, window.price_eur_kwh, estimated))
            if end == window.end:
                index_end = (
                    None
                    if index_a is None or index_b is None
                    else index_a + (index_b - index_a) * (end - a).total_seconds() / total
                )
                if window.energy_wh > 0:
                    step.windows.append(window.message(index_end))
                self.window = self._open(end, index_end)
            t = end

    def _event(
        self,
        step: Step,
        ts: datetime,
        name: str,
        message: str,
        index_wh: float,
        extra: dict[str, float | str | bool | None] | None = None,
    ) -> None:
        log.warning("%s: %s", self.point, message)
        details: dict[str, float | str | bool | None] = {
            "index_before_wh": self.last_index,
            "index_after_wh": index_wh,
        }
        details.update(extra or {})
        step.events.append(EventMessage(ts=ts, event=name, message=message, details=details))
