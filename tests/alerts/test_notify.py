"""Phone notifications: the queue policy (pure) and delivery through apprise to a local HTTP
endpoint speaking the ntfy protocol (tests/support/ntfy_server.py), including the endpoint going down."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from collector.alerts.notify import Notifier
from collector.alerts.notify_queue import NotifyQueue
from collector.config import SiteConfig
from collector.settings import load
from collector.wire.kinds import Outgoing
from collector.wire.messages import AlertMessage, ShedMessage
from tests.support.ntfy_server import NtfyServer
from tests.support.paths import EXAMPLES
from tests.support.servers import wait_until

TS = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)


def alert(state: str, alert_name: str = "socket_overcurrent", point: str = "cp1") -> AlertMessage:
    value = 35.2 if state == "firing" else 20.0
    verb = "Surintensité" if state == "firing" else "Fin de surintensité"
    return AlertMessage(
        ts=TS,
        alert=alert_name,
        state=state,
        point=point,
        value=value,
        limit=32.0,
        message=f"{verb} sur Borne 1 : {value:.1f} A pour 32 A autorisés".replace(".", ","),
    )


# Queue policy (pure) ----------------------------------------------------------------------------


def drain(queue: NotifyQueue, now: float) -> list[tuple[str, str]]:
    sent: list[tuple[str, str]] = []
    while (item := queue.take(now)) is not None:
        queue.delivered(item, now)
        sent.append((item.message.alert, item.message.state))
    return sent


def test_firing_and_resolved_are_sent_in_order() -> None:
    queue = NotifyQueue(min_interval_s=300, capacity=10)
    queue.add(alert("firing"), 0)
    queue.add(alert("resolved"), 1)
    assert drain(queue, 1) == [("socket_overcurrent", "firing"), ("socket_overcurrent", "resolved")]


def test_duplicates_are_dropped() -> None:
    queue = NotifyQueue(min_interval_s=0, capacity=10)
    queue.add(alert("resolved"), 0)  # nothing was firing
    queue.add(alert("firing"), 0)
    queue.add(alert("firing"), 0)
    assert drain(queue, 0) == [("socket_overcurrent", "firing")]
    queue.add(alert("firing"), 1)  # the phone already knows
    assert drain(queue, 1) == []
    assert queue.coalesced == 3


def test_flapping_gives_one_alarm_within_the_interval() -> None:
    queue = NotifyQueue(min_interval_s=300, capacity=10)
    sent = []
    for t in range(0, 120, 10):  # firing/resolved every 5 s for two minutes
        queue.add(alert("firing"), t)
        sent += drain(queue, t)
        queue.add(alert("resolved"), t + 5)
        sent += drain(queue, t + 5)
    assert sent == [("socket_overcurrent", "firing"), ("socket_overcurrent", "resolved")]


def test_a_firing_held_by_the_interval_goes_out_if_still_firing() -> None:
    queue = NotifyQueue(min_interval_s=300, capacity=10)
    queue.add(alert("firing"), 0)
    assert len(drain(queue, 0)) == 1
    queue.add(alert("resolved"), 10)
    assert len(drain(queue, 10)) == 1
    queue.add(alert("firing"), 20)
    assert drain(queue, 20) == []
    assert queue.wait_s(20) == 280
    assert drain(queue, 300) == [("socket_overcurrent", "firing")]


def test_firing_while_a_resolved_is_queued_cancels_it() -> None:
    queue = NotifyQueue(min_interval_s=0, capacity=10)
    queue.add(alert("firing"), 0)
    drain(queue, 0)
    queue.add(alert("resolved"), 1)
    queue.add(alert("firing"), 2)
    assert drain(queue, 2) == []  # still firing, as the phone already knows


def test_keys_are_independent_and_one_message_is_in_flight() -> None:
    queue = NotifyQueue(min_interval_s=300, capacity=10)
    queue.add(alert("firing", point="cp1"), 0)
    queue.add(alert("firing", "site_overload", "main"), 0)
    first = queue.take(0)
    assert first is not None and queue.take(0) is None
    queue.delivered(first, 0)
    second = queue.take(0)
    assert second is not None and second.message.point == "main"


def test_full_queue_drops_the_oldest_pair_first() -> None:
    queue = NotifyQueue(min_interval_s=0, capacity=3)
    queue.add(alert("firing", point="cp1"), 0)
    queue.add(alert("firing", point="cp2"), 0)
    queue.add(alert("resolved", point="cp1"), 0)
    queue.add(alert("firing", point="cp3"), 0)
    assert [(p.message.point, p.message.state) for p in queue.pending] == [
        ("cp2", "firing"),
        ("cp3", "firing"),
    ]
    assert queue.dropped == 2


# Delivery through apprise to a local ntfy endpoint ------------------------------------------------


def site_with(urls: list[str], **notify: Any) -> SiteConfig:
    data: dict[str, Any] = yaml.safe_load((EXAMPLES / "hotel-vda.yaml").read_text())
    data["notify"] = {"urls": urls, "retry_initial_s": 0.1, "retry_max_s": 0.3, **notify}
    return SiteConfig(**data)


@pytest.fixture
def notifier(ntfy: NtfyServer) -> Iterator[Notifier]:
    made = Notifier.from_site(site_with([ntfy.url + "?priority=high&tags=warning"]))
    yield made
    made.close()


def test_firing_and_resolved_reach_the_ntfy_endpoint_in_french(
    ntfy: NtfyServer, notifier: Notifier
) -> None:
    notifier.observe(Outgoing(None, alert("firing")))
    notifier.observe(Outgoing(None, ShedMessage(ts=TS, active=False, excess_w=0, reason="normal")))
    notifier.observe(Outgoing(None, alert("resolved")))
    wait_until(lambda: len(ntfy.received()) == 2, timeout=10, what="two notifications")
    firing, resolved = ntfy.received()
    assert firing.topic == "irve"
    assert firing.message == "Surintensité sur Borne 1 : 35,2 A pour 32 A autorisés"
    assert firing.title == "Alerte recharge – Hôtel de Villeneuve d'Ascq"
    assert firing.priority == "high"
    assert firing.tags == ["warning"]
    assert resolved.message.startswith("Fin de surintensité sur Borne 1")
    assert resolved.title == "Alerte terminée – Hôtel de Villeneuve d'Ascq"


def test_english_titles() -> None:
    server = NtfyServer()
    server.start()
    english = Notifier.from_site(site_with([server.url], language="en"))
    try:
        english.submit(alert("firing"))
        wait_until(lambda: len(server.received()) == 1, timeout=10, what="a notification")
        assert server.received()[0].title == "Charging alert – Hôtel de Villeneuve d'Ascq"
    finally:
        english.close()
        server.stop()


@pytest.mark.timing
def test_endpoint_down_submit_never_blocks_and_delivery_follows_its_return(
    ntfy: NtfyServer, notifier: Notifier
) -> None:
    ntfy.stop()
    started = time.monotonic()
    notifier.submit(alert("firing"))
    notifier.submit(alert("resolved"))
    assert time.monotonic() - started < 0.5  # no connection attempt (seconds) in the caller
    channel = notifier.channels[0]
    wait_until(lambda: channel.failures >= 2, timeout=10, what="failed attempts")
    assert ntfy.received() == []
    ntfy.start()  # same port: the service is back
    wait_until(lambda: len(ntfy.received()) == 2, timeout=10, what="delivery after return")
    assert [m.message.split(" ")[0] for m in ntfy.received()] == ["Surintensité", "Fin"]


def test_bad_url_is_reported_and_the_others_still_work(
    ntfy: NtfyServer, caplog: pytest.LogCaptureFixture
) -> None:
    made = Notifier.from_site(site_with(["nonsense://nowhere", ntfy.url]))
    try:
        assert len(made.channels) == 1
        assert "notify.urls[0]" in caplog.text
        made.submit(alert("firing"))
        wait_until(lambda: len(ntfy.received()) == 1, timeout=10, what="a notification")
    finally:
        made.close()


def test_urls_from_the_environment(monkeypatch: pytest.MonkeyPatch, ntfy: NtfyServer) -> None:
    monkeypatch.setenv("IRVE_NOTIFY__URLS", f'["{ntfy.url}"]')
    site = load(SiteConfig, EXAMPLES / "hotel-vda.yaml")  # the loader reads the environment
    assert site.notify.urls == [SecretStr(ntfy.url)]
