"""A stand-in for the collector's MQTT link, to drive the app without a broker."""

from __future__ import annotations

from collections.abc import Callable

from collector.wire.kinds import Envelope


class RecordingLink:
    """Keeps what the app sends; `receive` delivers a message as the broker would."""

    def __init__(self) -> None:
        self.sent: list[Envelope] = []
        self._on_message: Callable[[str, bytes, bool], None] = lambda t, p, r: None
        self._on_connected: Callable[[], None] = lambda: None

    def attach(
        self, on_message: Callable[[str, bytes, bool], None], on_connected: Callable[[], None]
    ) -> None:
        self._on_message, self._on_connected = on_message, on_connected

    def send(self, envelope: Envelope) -> None:
        self.sent.append(envelope)

    def receive(self, topic: str, payload: bytes, retained: bool = False) -> None:
        self._on_message(topic, payload, retained)

    def connect(self) -> None:
        self._on_connected()

    def topics(self) -> list[str]:
        return [e.topic for e in self.sent]
