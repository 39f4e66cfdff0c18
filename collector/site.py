"""A site as every command loads it (I/O: reads the site file and the profiles), and instants
given in its local time."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from collector.config import SiteConfig
from collector.meters.profile import Profile, load_profiles
from collector.mqtt.client import tls_problems
from collector.settings import ConfigError, apply_log_level, load


def load_site(path: str) -> tuple[SiteConfig, dict[str, Profile]]:
    """The site and the profiles its meters use, every reference and file checked: what
    `irve check` accepts, `irve collect` starts with."""
    site = load(SiteConfig, path)
    apply_log_level(site)
    profiles = load_profiles(site.profiles_dir)
    problems = tls_problems(site.mqtt) + [
        f"meters[{i}].profile: unknown profile {m.profile!r} (see `irve profiles`)"
        for i, m in enumerate(site.meters)
        if m.profile not in profiles
    ]
    for i, meter in enumerate(site.meters):
        profile = profiles.get(meter.profile)
        if meter.socket and profile and meter.socket.phases > profile.phases:
            problems.append(
                f"meters[{i}].socket.phases: {meter.socket.phases} phases but profile "
                f"{profile.id} measures {profile.phases}"
            )
    if problems:
        raise ConfigError(problems)
    return site, profiles


def local_instant(text: str, tz: ZoneInfo, field: str, end_of_day: bool = False) -> datetime:
    """`2026-01-10` or `2026-01-10T15:00` in the site's time zone -> aware datetime."""
    try:
        if len(text.strip()) == 10:
            day = date.fromisoformat(text.strip())
            if end_of_day:
                day += timedelta(days=1)
            return datetime.combine(day, time(0), tzinfo=tz)
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError([f"--{field}: {text!r} is not YYYY-MM-DD or YYYY-MM-DDTHH:MM"]) from None
    return value if value.tzinfo else value.replace(tzinfo=tz)
