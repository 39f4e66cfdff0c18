"""Register coalescing: read a meter's values in the fewest requests its profile allows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from collector.meters.profile import Function, Profile
from collector.meters.registers import decode


@dataclass(frozen=True)
class Slot:
    name: str
    offset: int  # register offset inside its request
    count: int


@dataclass(frozen=True)
class Request:
    function: Function
    address: int
    count: int
    slots: tuple[Slot, ...]


def plan_reads(
    profile: Profile, names: Iterable[str] | None = None, max_read: int | None = None
) -> list[Request]:
    """Group values by function code and cover them with as few requests as possible.

    A request may span unused registers up to the profile's `max_gap` and never exceeds
    `max_read` registers (or the smaller limit learnt from the meter).
    """
    limit = min(max_read or profile.max_read, profile.max_read)
    wanted = set(profile.values if names is None else names)
    by_function: dict[Function, list[tuple[int, int, str]]] = {}
    for name, spec in profile.values.items():
        if name in wanted:
            item = (spec.address, spec.count, name)
            by_function.setdefault(profile.function_of(spec), []).append(item)

    requests: list[Request] = []
    for function in sorted(by_function):
        group: list[tuple[int, int, str]] = []
        for item in sorted(by_function[function]):
            if group:
                start = group[0][0]
                end = max(a + c for a, c, _ in group)
                gap = item[0] - end
                if gap > profile.max_gap or item[0] + item[1] - start > limit:
                    requests.append(_request(function, group))
                    group = []
            group.append(item)
        if group:
            requests.append(_request(function, group))
    return requests


def _request(function: Function, group: list[tuple[int, int, str]]) -> Request:
    start = group[0][0]
    end = max(a + c for a, c, _ in group)
    slots = tuple(Slot(name, a - start, c) for a, c, name in group)
    return Request(function, start, end - start, slots)


def decode_request(
    profile: Profile, request: Request, words: Sequence[int]
) -> dict[str, float | None]:
    """Values of one answered request, in public units (None where not available)."""
    if len(words) < request.count:
        raise ValueError(f"short answer: {len(words)} of {request.count} registers")
    values: dict[str, float | None] = {}
    for slot in request.slots:
        spec = profile.values[slot.name]
        values[slot.name] = decode(
            words[slot.offset : slot.offset + slot.count],
            spec.type,
            profile.word_order_of(spec),
            profile.factor_of(spec),
            profile.na_of(spec),
        )
    return values
