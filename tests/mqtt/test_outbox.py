"""The outbox's buffering policy, without I/O: bounded, in order, critical messages never lost."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.mqtt.outbox import Outbox
from collector.wire.kinds import Envelope

KINDS = ("state", "availability", "discovery", "energy", "session", "event", "alert", "shed")
CRITICAL = {"energy", "session", "event", "alert", "shed"}


def env(kind: str, n: int) -> Envelope:
    return Envelope(f"t/{kind}", str(n).encode(), retain=kind == "state", kind=kind,
                    critical=kind in CRITICAL)  # fmt: skip


def drain(box: Outbox) -> list[Envelope]:
    out = []
    while box:
        out.append(box.pop())
    return out


def test_keeps_order_below_the_bound() -> None:
    box = Outbox(10)
    sent = [env(k, i) for i, k in enumerate(["state", "energy", "availability", "state"])]
    for e in sent:
        box.put(e)
    assert drain(box) == sent
    assert box.stats.dropped == 0


def test_full_drops_the_oldest_state_first() -> None:
    box = Outbox(3)
    box.put(env("availability", 0))
    box.put(env("state", 1))
    box.put(env("state", 2))
    box.put(env("energy", 3))  # full: state 1 goes
    box.put(env("state", 4))  # full: state 2 goes
    assert [e.payload for e in drain(box)] == [b"0", b"3", b"4"]
    assert box.stats.dropped_state == 2


def test_critical_messages_are_never_dropped_even_beyond_the_bound() -> None:
    box = Outbox(2)
    for i in range(5):
        box.put(env("energy", i))
    box.put(env("state", 99))  # no room and nothing droppable: the new reading is dropped
    assert [e.payload for e in drain(box)] == [b"0", b"1", b"2", b"3", b"4"]
    assert box.stats.over_limit == 3
    assert box.stats.dropped_state == 1


def test_without_states_other_non_critical_go_before_critical() -> None:
    box = Outbox(2)
    box.put(env("availability", 0))
    box.put(env("discovery", 1))
    box.put(env("alert", 2))  # availability 0 makes room
    box.put(env("availability", 3))  # discovery 1 makes room
    assert [e.payload for e in drain(box)] == [b"2", b"3"]
    assert box.stats.dropped_other == 2


def test_put_front_returns_a_message_to_the_head() -> None:
    box = Outbox(5)
    box.put(env("state", 1))
    box.put(env("energy", 2))
    first = box.pop()
    box.put_front(first)
    assert drain(box) == [env("state", 1), env("energy", 2)]
    with pytest.raises(IndexError):
        box.pop()


@given(
    st.integers(min_value=1, max_value=20),
    st.lists(st.tuples(st.sampled_from(KINDS), st.booleans()), max_size=200),
)
def test_policy_holds_for_any_sequence(bound: int, ops: list[tuple[str, bool]]) -> None:
    """Any mix of puts and pops: order kept, every critical message delivered, and the
    messages dropped are exactly the ones the policy names."""
    box = Outbox(bound)
    delivered: list[Envelope] = []
    produced: list[Envelope] = []
    for n, (kind, pop_after) in enumerate(ops):
        e = env(kind, n)
        produced.append(e)
        box.put(e)
        non_critical = sum(not x.critical for x in box.envelopes())
        assert len(box) <= bound or non_critical == 0
        if pop_after and box:
            delivered.append(box.pop())
    delivered += drain(box)
    numbers = [int(e.payload) for e in delivered]
    assert numbers == sorted(numbers), "sent out of order"
    assert [e for e in produced if e.critical] == [e for e in delivered if e.critical]
    assert len(produced) - len(delivered) == box.stats.dropped
    assert box.stats.high_water <= bound + sum(e.critical for e in produced)
