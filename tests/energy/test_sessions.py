"""Charging sessions: detection, pauses, badges, costs across a price change, restarts."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from collector.config import SessionSettings, SiteConfig, TariffSettings
from collector.energy.intervals import PointEnergy
from collector.energy.processor import FAILURE_LOG_EVERY_S, EnergyProcessor
from collector.energy.sessions import MAX_WAITING_BADGES, SessionTracker
from collector.energy.tariff import Tariff
from collector.meters.reading import Reading
from collector.settings import load
from collector.state import FileStateStore, default_path
from collector.wire.kinds import Outgoing
from collector.wire.messages import EnergyMessage, EventMessage, Message, SessionMessage

PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
SETTINGS = SessionSettings(
    start_power_w=300, start_after_s=10, stop_power_w=100, end_after_s=300, badge_window_s=600
)


def base_tariff() -> Tariff:
    settings = TariffSettings.model_validate(
        {
            "option": "base",
            "prices": [
                {"since": "2025-08-01", "base": 0.1952},
                {"since": "2026-02-01", "base": 0.1927},
            ],
        }
    )
    return Tariff(settings, PARIS)


class Socket:
    """A socket drawing a power profile, read every 10 s: index integrates the true power."""

    def __init__(
        self,
        start: datetime = T0,
        tariff: Tariff | None = None,
        settings: SessionSettings = SETTINGS,
    ) -> None:
        self.meter = PointEnergy("cp1", tariff or base_tariff(), 60, 32 * 253.0, 120)
        self.tracker = SessionTracker("cp1", settings)
        self.ts = start
        self.index = 1_000_000.0
        self.out: list[Message] = []
        self._read(0.0)

    def _read(self, power: float) -> None:
        step = self.meter.update(self.ts, self.index, power)
        self.out += self.tracker.update(self.ts, power, step.pieces)

    def draw(self, power: float, seconds: int) -> None:
        for _ in range(seconds // 10):
            self.ts += timedelta(seconds=10)
            self.index += power * 10 / 3600
            self._read(power)

    def badge(self, badge: str) -> None:
        self.out += self.tracker.on_badge(badge, self.ts)

    def sessions(self, event: str) -> list[SessionMessage]:
        return [m for m in self.out if isinstance(m, SessionMessage) and m.event == event]


def test_short_pause_does_not_split_a_session_long_one_does() -> None:
    s = Socket()
    s.draw(0, 60)
    s.draw(7200, 1800)  # 3.6 kWh
    s.draw(0, 240)  # balancing pause, shorter than end_after_s
    s.draw(7200, 1800)
    s.draw(0, 600)
    s.draw(3600, 600)  # a second car, after a long stop
    s.draw(0, 600)
    ends = s.sessions("end")
    assert len(s.sessions("start")) == 2 and len(ends) == 2
    first, second = ends
    assert first.energy_wh == pytest.approx(7200.0)
    assert first.max_power_w == 7200
    assert first.start == T0 + timedelta(seconds=60)
    assert first.duration_s == pytest.approx(1800 + 240 + 1800 + 10)
    assert first.periods["BASE"].energy_wh == pytest.approx(7200.0)
    assert first.cost_eur == pytest.approx(7.2 * 0.1952)
    assert second.energy_wh == pytest.approx(600.0)
    assert first.session_id != second.session_id


def test_short_spike_is_not_a_session() -> None:
    s = Socket()
    s.draw(2000, 10)  # under start_after_s
    s.draw(0, 900)
    assert s.sessions("start") == []


def test_badge_before_plug_in_within_window_attaches() -> None:
    s = Socket()
    s.badge("room-12")
    s.draw(0, 300)
    s.draw(7000, 600)
    s.draw(0, 600)
    assert [m.badge for m in s.sessions("start")] == ["room-12"]
    assert [m.badge for m in s.sessions("end")] == ["room-12"]


def test_badge_during_session_attaches_and_is_announced() -> None:
    s = Socket()
    s.draw(7000, 600)
    s.badge("room-7")
    s.draw(7000, 600)
    s.draw(0, 600)
    starts = s.sessions("start")
    assert [m.badge for m in starts] == [None, "room-7"]
    assert starts[0].session_id == starts[1].session_id
    assert s.sessions("end")[0].badge == "room-7"


def test_badge_too_early_or_after_the_end_is_not_attached() -> None:
    s = Socket()
    s.badge("room-1")
    s.draw(0, 900)  # more than badge_window_s before the car arrives
    s.draw(7000, 600)
    s.draw(0, 600)
    assert s.sessions("end")[0].badge is None
    unmatched = [m for m in s.out if isinstance(m, EventMessage)]
    assert [(e.event, e.details["badge"]) for e in unmatched] == [("badge_unmatched", "room-1")]
    s.badge("room-2")  # after the end: never rewrites the ended session
    assert len(s.sessions("end")) == 1 and s.sessions("end")[0].badge is None
    s.draw(0, 700)
    s.out += s.tracker.on_tick(s.ts)
    assert [m.event for m in s.out if isinstance(m, EventMessage)] == ["badge_unmatched"] * 2


def test_price_change_at_local_midnight_uses_both_prices() -> None:
    s = Socket(datetime(2026, 1, 31, 23, 0, tzinfo=PARIS))
    s.draw(7200, 7200)  # 23:00 -> 01:00 local, 7.2 kWh before and after midnight
    s.draw(0, 600)
    end = s.sessions("end")[0]
    assert end.energy_wh == pytest.approx(14400.0)
    # The session starts with the 23:00 reading (the one before the first high one).
    assert end.cost_eur == pytest.approx(7.2 * 0.1952 + 7.2 * 0.1927, abs=1e-6)
    assert end.start == datetime(2026, 1, 31, 23, 0, tzinfo=PARIS)


def test_the_1_august_movement_at_midnight_mid_session_from_the_table() -> None:
    """EDF's regulated HP/HC prices move on 1 August 2026 (the bundled table, 9 kVA): a charge
    22:00 on 31 July -> 02:00 on 1 August is HC at 0.1579 until midnight, at 0.1589 after."""
    table = TariffSettings.model_validate(
        {"supplier": "edf-tarif-bleu", "option": "hphc", "kva": 9, "offpeak": ["22:00-06:00"]}
    )
    s = Socket(datetime(2026, 7, 31, 22, 0, tzinfo=PARIS), Tariff(table, PARIS))
    s.draw(7200, 4 * 3600)
    s.draw(0, 600)
    end = s.sessions("end")[0]
    assert end.energy_wh == pytest.approx(28_800.0)
    assert end.cost_eur == round(14.4 * 0.1579 + 14.4 * 0.1589, 6) == 4.56192
    assert set(end.periods) == {"HC"}


def test_session_across_hc_start_has_energy_and_cost_per_period() -> None:
    hphc = TariffSettings.model_validate(
        {
            "option": "hphc",
            "offpeak": ["22:00-06:00"],
            "prices": [{"since": "2025-08-01", "hp": 0.2081, "hc": 0.1635}],
        }
    )
    s = Socket(datetime(2026, 1, 15, 21, 0, tzinfo=PARIS), Tariff(hphc, PARIS))
    s.draw(7200, 7200)  # 21:00 -> 23:00
    s.draw(0, 600)
    (end,) = s.sessions("end")
    assert sorted(end.periods) == ["HC", "HP"]
    assert end.periods["HP"].energy_wh == pytest.approx(7200.0)
    assert end.periods["HC"].energy_wh == pytest.approx(7200.0)
    assert end.periods["HP"].cost_eur == pytest.approx(7.2 * 0.2081)
    assert end.periods["HC"].cost_eur == pytest.approx(7.2 * 0.1635)
    assert end.cost_eur == pytest.approx(7.2 * (0.1635 + 0.2081))


def test_thresholds_and_durations_are_the_sites() -> None:
    """A 6 A domestic socket (1.4 kW) with a 2 kW start threshold is never a session; with
    end_after_s 60, a 4-minute pause ends the session."""
    strict = SETTINGS.model_copy(update={"start_power_w": 2000.0})
    s = Socket(settings=strict)
    s.draw(1400, 1800)
    s.draw(0, 600)
    assert s.sessions("start") == []
    short = SETTINGS.model_copy(update={"start_power_w": 1000.0, "end_after_s": 60.0})
    s = Socket(settings=short)
    s.draw(1400, 1800)
    s.draw(0, 240)
    s.draw(1400, 1800)
    s.draw(0, 600)
    assert [m.energy_wh for m in s.sessions("end")] == pytest.approx([700.0, 700.0])


def write_site(tmp_path: Path, **extra: Any) -> SiteConfig:
    data: dict[str, Any] = {
        "site": {"id": "hotel", "timezone": "Europe/Paris", "subscribed_power_kva": 36},
        "tariff": {"option": "base", "prices": [{"since": "2025-08-01", "base": 0.1952}]},
        "buses": [{"id": "board", "type": "tcp", "host": "127.0.0.1"}],
        "meters": [
            {
                "id": f"cp{i}",
                "bus": "board",
                "unit": i,
                "profile": "eastron-sdm120",
                "role": "socket",
                "socket": {"label": f"Borne {i}", "rated_current_a": 32},
            }
            for i in (1, 2)
        ],
        "state_dir": str(tmp_path / "state"),
        "sessions": SETTINGS.model_dump(),
    }
    data.update(extra)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    return load(SiteConfig, path)


def processor(site: SiteConfig) -> EnergyProcessor:
    """The energy stage saving in the caller's thread: what it emits comes out at once."""
    path = default_path(site.state_dir, site.site.id)
    return EnergyProcessor(site, store=FileStateStore(path, background=False))


def feed(
    p: EnergyProcessor, point: str, ts: datetime, index: float, power: float
) -> list[Outgoing]:
    return list(p.on_reading(Reading(point, ts, {"energy_wh": index, "power_w": power})))


def test_two_sockets_badges_and_restart_through_the_processor(tmp_path: Path) -> None:
    site = write_site(tmp_path)
    p = processor(site)
    out: list[Outgoing] = []
    idx = {"cp1": 0.0, "cp2": 0.0}
    power = {"cp1": 7000.0, "cp2": 0.0}
    ts = T0
    for point in idx:
        out += feed(p, point, ts, 0.0, 0.0)
    assert p.charging("cp1") is False and p.charging("nope") is None
    for _ in range(60):  # 10 minutes, cp1 charging
        ts += timedelta(seconds=10)
        for point in idx:
            idx[point] += power[point] * 10 / 3600
            out += feed(p, point, ts, idx[point], power[point])
    assert p.charging("cp1") is True and p.charging("cp2") is False
    out += p.on_badge("cp2", "room-2", ts)  # a badge on the other socket
    p.close()

    # Restart: a new processor picks the running session up from the state file.
    p = processor(site)
    assert p.charging("cp1") is True
    power = {"cp1": 0.0, "cp2": 7000.0}
    for _ in range(120):
        ts += timedelta(seconds=10)
        for point in idx:
            idx[point] += power[point] * 10 / 3600
            out += feed(p, point, ts, idx[point], power[point])
        out += p.on_tick(ts)
    sessions = {
        (o.point, o.message.event): o.message
        for o in out
        if o.kind == "session" and isinstance(o.message, SessionMessage)
    }
    assert sessions["cp1", "end"].badge is None
    assert sessions["cp1", "end"].energy_wh == pytest.approx(7000 * 600 / 3600)
    assert sessions["cp2", "start"].badge == "room-2"
    energy = sum(o.message.energy_wh for o in out if o.kind == "energy" and o.point == "cp1")  # type: ignore[attr-defined]
    assert energy == pytest.approx(7000 * 600 / 3600)


def test_crash_after_a_window_sends_that_same_window_again_never_another(tmp_path: Path) -> None:
    """Killed right after a window went out, the collector restarts from the state that
    recorded it as emitted (and still lists it as unsent): the same message, byte for byte, is
    sent again, and the energy adds up exactly."""
    site = write_site(tmp_path)
    p = processor(site)
    stored: dict[tuple[str | None, datetime], bytes] = {}
    repeated = 0

    def store(out: list[Outgoing]) -> None:
        nonlocal repeated
        for o in out:
            if o.kind == "energy" and isinstance(o.message, EnergyMessage):
                key = (o.point, o.message.start)
                if key in stored:
                    repeated += 1
                    assert o.message.to_json() == stored[key]
                stored[key] = o.message.to_json()

    index, ts = 5_000.0, T0 + timedelta(seconds=5)
    store(feed(p, "cp1", ts, index, 7000.0))
    for _ in range(30):  # 5 minutes
        ts += timedelta(seconds=10)
        index += 7000 * 10 / 3600
        out = feed(p, "cp1", ts, index, 7000.0)
        store(out)
        if any(o.kind == "energy" for o in out) and ts > T0 + timedelta(minutes=3):
            break
    p = processor(site)  # SIGKILL: no close()
    for _ in range(30):
        ts += timedelta(seconds=10)
        index += 7000 * 10 / 3600
        store(feed(p, "cp1", ts, index, 7000.0))
    assert repeated == 1
    open_wh = p.points["cp1"].window.energy_wh  # type: ignore[union-attr]
    total = sum(EnergyMessage.model_validate_json(m).energy_wh for m in stored.values())
    assert total + open_wh == pytest.approx(index - 5_000.0)


def test_windows_wait_while_the_state_cannot_be_saved(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The state folder unwritable: windows are held back (ERROR), none is published; once it
    is writable again they all go out, in order, and nothing is lost."""
    site = write_site(tmp_path)
    p = processor(site)
    state_dir, saved = Path(site.state_dir), tmp_path / "saved"
    out: list[Outgoing] = []
    index, ts = 5_000.0, T0
    out += feed(p, "cp1", ts, index, 7000.0)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.rename(saved)
    state_dir.write_text("")  # a file where the folder was: every save fails
    for _ in range(30):
        ts += timedelta(seconds=10)
        index += 7000 * 10 / 3600
        out += feed(p, "cp1", ts, index, 7000.0)
    assert out == [] and p.held >= 4
    assert "energy/session message(s) held back until it can be saved" in caplog.text
    # One ERROR every FAILURE_LOG_EVERY_S of the readings' time (300 s here), not one a reading.
    held_back = [r.levelname for r in caplog.records if "held back" in r.message]
    assert held_back == ["ERROR"] * int(300 / FAILURE_LOG_EVERY_S)
    state_dir.unlink()
    saved.rename(state_dir)
    ts += timedelta(seconds=10)
    index += 7000 * 10 / 3600
    out += feed(p, "cp1", ts, index, 7000.0)
    windows = [o.message for o in out if isinstance(o.message, EnergyMessage)]
    assert len(windows) >= 5 and p.held == 0
    assert all(a.end == b.start for a, b in itertools.pairwise(windows))
    open_wh = p.points["cp1"].window.energy_wh  # type: ignore[union-attr]
    assert sum(w.energy_wh for w in windows) + open_wh == pytest.approx(index - 5_000.0)


def test_a_crash_while_the_state_cannot_be_saved_recomputes_what_was_held(
    tmp_path: Path,
) -> None:
    """Held windows were never published: after a crash they are computed again from the last
    state saved, and the energy still adds up exactly."""
    site = write_site(tmp_path)
    p = processor(site)
    state_dir, saved = Path(site.state_dir), tmp_path / "saved"
    published: list[EnergyMessage] = []
    index, ts = 5_000.0, T0

    def read(p: EnergyProcessor, minutes: int) -> None:
        nonlocal index, ts
        for _ in range(minutes * 6):
            ts += timedelta(seconds=10)
            index += 7000 * 10 / 3600
            out = feed(p, "cp1", ts, index, 7000.0)
            published.extend(o.message for o in out if isinstance(o.message, EnergyMessage))

    feed(p, "cp1", ts, index, 7000.0)
    read(p, 3)
    before = len(published)
    state_dir.rename(saved)
    state_dir.write_text("")
    read(p, 3)
    assert len(published) == before and p.held > 0
    state_dir.unlink()
    saved.rename(state_dir)
    p = processor(site)  # SIGKILL while held: restart from the last state saved
    read(p, 3)
    by_start: dict[datetime, bytes] = {}
    for window in published:  # the last one sent before the failure may come again, same bytes
        assert by_start.setdefault(window.start, window.to_json()) == window.to_json()
    open_wh = p.points["cp1"].window.energy_wh  # type: ignore[union-attr]
    total = sum(EnergyMessage.model_validate_json(m).energy_wh for m in by_start.values())
    assert total + open_wh == pytest.approx(index - 5_000.0)


def test_same_badge_again_sends_nothing_and_waiting_badges_are_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = Socket()
    for n in range(MAX_WAITING_BADGES + 5):
        s.badge(f"room-{n}")
    assert [b for b, _ in s.tracker.badges] == [f"room-{n}" for n in range(5, 15)]
    assert "the oldest ('room-4') is dropped" in caplog.text
    s.draw(7000, 600)
    assert [m.badge for m in s.sessions("start")] == ["room-14"]
    for _ in range(100):
        s.badge("room-14")
    assert len(s.sessions("start")) == 1
    s.badge("room-15")
    assert [m.badge for m in s.sessions("start")] == ["room-14", "room-15"]


def charger_socket() -> Socket:
    s = Socket()
    s.tracker = SessionTracker("cp1", SETTINGS, explicit=True)
    return s


def test_a_charger_session_is_opened_and_closed_at_its_times_not_by_power() -> None:
    s = charger_socket()
    s.draw(7200, 60)  # power alone starts nothing on a socket served by a charger
    assert s.sessions("start") == []
    start = s.ts + timedelta(seconds=5)  # between two readings: half the next one counts
    s.out += s.tracker.begin("cp1-tx7", start, "04A1B2C3", "12", 7)
    s.draw(7200, 3600)
    end = s.ts - timedelta(seconds=5)  # the stop arrives after the meter passed it
    s.out += s.tracker.stop(7, end, charger_energy_wh=7150.0)
    s.draw(7200, 60)
    (first,) = s.sessions("start")
    (last,) = s.sessions("end")
    assert (first.start, first.room, first.source, first.transaction_id) == (start, "12", "ocpp", 7)
    assert (last.start, last.ts, last.badge, last.room) == (start, end, "04A1B2C3", "12")
    assert last.energy_wh == pytest.approx(7200.0 * 3590 / 3600)
    assert last.cost_eur == pytest.approx(last.energy_wh / 1000 * 0.1952)
    assert last.charger_energy_wh == 7150.0
    assert not [m for m in s.out if isinstance(m, EventMessage)]  # within 2 % / 100 Wh
    assert not s.tracker.charging


def test_a_stop_ahead_of_the_meter_ends_at_the_first_reading_past_it() -> None:
    s = charger_socket()
    s.out += s.tracker.begin("cp1-tx8", s.ts, "B", None, 8)
    s.draw(3600, 600)
    s.out += s.tracker.stop(8, s.ts + timedelta(seconds=5), charger_energy_wh=900.0)
    assert s.sessions("end") == []  # the meter has not reached the end yet
    s.draw(3600, 10)
    (last,) = s.sessions("end")
    assert last.energy_wh == pytest.approx(3600 * 605 / 3600)
    (mismatch,) = [m for m in s.out if isinstance(m, EventMessage)]
    assert mismatch.event == "charger_energy_mismatch"
    assert mismatch.details["charger_energy_wh"] == 900.0


def test_a_transaction_queued_by_the_charger_is_accounted_at_its_real_times() -> None:
    s = charger_socket()
    s.draw(0, 600)
    began = s.ts
    s.draw(3600, 1200)
    ended = s.ts
    s.draw(0, 600)
    # Both arrive once the link is back, 10 minutes after the end.
    s.out += s.tracker.begin("cp1-tx9", began, "B", None, 9)
    s.out += s.tracker.stop(9, ended, charger_energy_wh=None)
    (last,) = s.sessions("end")
    assert (last.start, last.ts) == (began, ended)
    assert last.energy_wh == pytest.approx(1200.0)


def test_a_charger_session_survives_a_restart() -> None:
    s = charger_socket()
    s.out += s.tracker.begin("cp1-tx10", s.ts, "B", "3", 10)
    s.draw(3600, 600)
    again = SessionTracker("cp1", SETTINGS, explicit=True)
    again.restore(s.tracker.to_dict())
    s.tracker = again
    s.draw(3600, 600)
    s.out += s.tracker.stop(10, s.ts, charger_energy_wh=1200.0)
    (last,) = s.sessions("end")
    assert (last.room, last.transaction_id, last.energy_wh) == ("3", 10, pytest.approx(1200.0))
