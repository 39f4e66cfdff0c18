"""Allowed charging periods in the site's local time: 22:00 boundaries, weekdays, DST days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from collector.config import OffpeakSeason, PriceRow, TariffSettings
from collector.load.schedule import Schedules
from collector.load.settings import ScheduleSettings

PARIS = ZoneInfo("Europe/Paris")
TARIFF = TariffSettings(
    option="hphc", offpeak=["22:00-06:00"], prices=[PriceRow(since="2026-01-01", hp=0.2, hc=0.15)]
)


def schedules(*entries: ScheduleSettings, tariff: TariffSettings = TARIFF) -> Schedules:
    return Schedules(entries, tariff, PARIS)


def local(text: str, fold: int = 0) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=PARIS, fold=fold)


def allowed_minutes(s: Schedules, point: str, start_utc: datetime, hours: int) -> int:
    return sum(s.allowed(point, start_utc + timedelta(minutes=m)) for m in range(hours * 60))


NIGHTS = ScheduleSettings(sockets=["cp1"], allowed=["22:00-07:00"])


def test_22_00_boundary_both_ways() -> None:
    s = schedules(NIGHTS)
    assert not s.allowed("cp1", local("2026-06-10T21:59:59"))
    assert s.allowed("cp1", local("2026-06-10T22:00:00"))
    assert s.allowed("cp1", local("2026-06-11T06:59:59"))
    assert not s.allowed("cp1", local("2026-06-11T07:00:00"))
    # The same instant seen in UTC: the zone, not the machine's clock, decides.
    assert s.allowed("cp1", datetime(2026, 6, 10, 20, 0, tzinfo=UTC))
    assert not s.allowed("cp1", datetime(2026, 6, 10, 19, 59, tzinfo=UTC))


def test_unscheduled_socket_may_always_charge() -> None:
    s = schedules(NIGHTS)
    assert not s.scheduled("cp2")
    assert s.allowed("cp2", local("2026-06-10T12:00"))


def test_spring_dst_night_is_one_hour_shorter() -> None:
    s = schedules(NIGHTS)
    # 28 March 2026 22:00 CET is 21:00 UTC; 29 March 07:00 CEST is 05:00 UTC: 8 real hours.
    start = datetime(2026, 3, 28, 18, 0, tzinfo=UTC)
    assert allowed_minutes(s, "cp1", start, 14) == 8 * 60
    assert s.allowed("cp1", datetime(2026, 3, 28, 21, 0, tzinfo=UTC))
    assert not s.allowed("cp1", datetime(2026, 3, 28, 20, 59, tzinfo=UTC))
    assert not s.allowed("cp1", datetime(2026, 3, 29, 5, 0, tzinfo=UTC))


def test_autumn_dst_night_is_one_hour_longer() -> None:
    s = schedules(NIGHTS)
    # 24 October 22:00 CEST is 20:00 UTC; 25 October 07:00 CET is 06:00 UTC: 10 real hours.
    start = datetime(2026, 10, 24, 17, 0, tzinfo=UTC)
    assert allowed_minutes(s, "cp1", start, 16) == 10 * 60
    assert s.allowed("cp1", local("2026-10-25T02:30", fold=0))
    assert s.allowed("cp1", local("2026-10-25T02:30", fold=1))


def test_range_inside_the_skipped_hour() -> None:
    s = schedules(ScheduleSettings(sockets=["cp1"], allowed=["01:00-03:00"]))
    # 02:00-03:00 does not exist on 29 March: 01:00 CET to 03:00 CEST is one real hour.
    assert allowed_minutes(s, "cp1", datetime(2026, 3, 28, 22, 0, tzinfo=UTC), 6) == 60


def test_a_wrapping_range_belongs_to_the_day_it_starts() -> None:
    s = schedules(ScheduleSettings(sockets=["cp1"], allowed=["22:00-07:00"], days=["fri"]))
    # 2026-06-12 is a Friday.
    assert s.allowed("cp1", local("2026-06-12T23:00"))
    assert s.allowed("cp1", local("2026-06-13T02:00"))  # Saturday morning: Friday's night
    assert not s.allowed("cp1", local("2026-06-13T22:30"))  # Saturday night
    assert not s.allowed("cp1", local("2026-06-12T02:00"))  # Thursday's night


def test_several_entries_add_up() -> None:
    s = schedules(
        ScheduleSettings(sockets=["cp1", "cp2"], allowed=["22:00-07:00"]),
        ScheduleSettings(sockets=["cp1"], allowed=["12:00-14:00", "23:30-24:00"], days=["sun"]),
    )
    assert s.allowed("cp1", local("2026-06-14T13:00"))  # a Sunday
    assert not s.allowed("cp2", local("2026-06-14T13:00"))
    assert not s.allowed("cp1", local("2026-06-15T13:00"))


def test_offpeak_follows_the_tariff_and_its_seasons() -> None:
    tariff = TariffSettings(
        option="hphc",
        offpeak=["22:00-06:00"],
        seasons=[
            OffpeakSeason(
                name="summer", start="04-01", end="10-31", offpeak=["02:00-07:00", "13:00-16:00"]
            )
        ],
        prices=[PriceRow(since="2026-01-01", hp=0.2, hc=0.15)],
    )
    s = schedules(ScheduleSettings(sockets=["cp1"], allowed="offpeak"), tariff=tariff)
    assert s.allowed("cp1", local("2026-01-10T22:00"))
    assert not s.allowed("cp1", local("2026-01-10T06:00"))
    assert s.allowed("cp1", local("2026-06-10T14:00"))
    assert not s.allowed("cp1", local("2026-06-10T22:30"))
    assert s.allowed("cp1", local("2026-06-10T06:59"))


def test_offpeak_on_tempo_is_22_00_to_06_00_across_the_autumn_dst_change() -> None:
    tempo = TariffSettings(option="tempo", supplier="edf-tarif-bleu", kva=36)
    s = schedules(ScheduleSettings(sockets=["cp1"], allowed="offpeak"), tariff=tempo)
    assert not s.allowed("cp1", local("2026-12-06T21:59"))
    assert s.allowed("cp1", local("2026-12-06T22:00"))
    assert s.allowed("cp1", local("2026-12-07T05:59"))
    assert not s.allowed("cp1", local("2026-12-07T06:00"))
    # 25 October 2026: 02:00-03:00 happens twice, so the Tempo night lasts 9 real hours.
    start = local("2026-10-24T22:00").astimezone(UTC)
    assert allowed_minutes(s, "cp1", start - timedelta(hours=1), 12) == 9 * 60
