"""Instants as the product counts them: UTC, from the Unix epoch; energy windows aligned on it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


def window_start(instant: datetime, window_s: int) -> datetime:
    """Start of the epoch-aligned window of `window_s` seconds containing `instant`."""
    windows = (instant - EPOCH) // timedelta(seconds=window_s)
    return EPOCH + timedelta(seconds=windows * window_s)


def aligned_end(instant: datetime, window_s: int) -> datetime:
    """End of the epoch-aligned window containing `instant`."""
    return window_start(instant, window_s) + timedelta(seconds=window_s)
