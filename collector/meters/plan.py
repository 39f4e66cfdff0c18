"""Register coalescing: read a meter's values in the fewest requests its profile allows."""

from __future__ import annotations

import math
import operator
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from collector.meters.profile import Function, Profile
from collector.meters.registers import STRUCT_CODES, decimals, scale_decimals, shortest_f32


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

    def __hash__(self) -> int:
        # The poller looks its decoder up by request at every read: hashed once, not through
        # every slot each time.
        cached: int | None = self.__dict__.get("_hash")
        if cached is None:
            cached = hash((self.function, self.address, self.count, self.slots))
            object.__setattr__(self, "_hash", cached)
        return cached


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


class RequestDecoder:
    """The values of one answered request in public units, compiled once per request: the
    answer's words go through one struct format (each value's words put in msw order first),
    and each value keeps only the steps its type and scale need. A "not available" marker or
    a number that is not finite becomes None, never a crash; a short answer or a word outside
    16 bits is a ValueError naming it."""

    def __init__(self, profile: Profile, request: Request) -> None:
        self.count = request.count
        order: list[int] = []
        codes = ""
        self._fields: list[tuple[str, int, int, bool, float, frozenset[int], int | None]] = []
        for slot in request.slots:
            spec = profile.values[slot.name]
            words = list(range(slot.offset, slot.offset + slot.count))
            if profile.word_order_of(spec) == "lsw":
                words.reverse()
            start = 2 * len(order)
            order += words
            codes += STRUCT_CODES[spec.type]
            scale = profile.factor_of(spec)
            # Decimals the scale adds when rounding (None: no rounding, as in `decode`).
            rounding = scale_decimals(scale) if scale != 1.0 and spec.type != "f64" else None
            na = frozenset(profile.na_of(spec))
            self._fields.append(
                (slot.name, start, start + 2 * slot.count, spec.type == "f32", scale, na, rounding)
            )
        # itemgetter of one index returns the item, not a 1-tuple: settled here, not per answer.
        take = operator.itemgetter(*order)
        self._take: Callable[[Sequence[int]], tuple[int, ...]] = (
            take if len(order) > 1 else lambda words: (take(words),)
        )
        self._pack = struct.Struct(f">{len(order)}H").pack
        self._unpack = struct.Struct(">" + codes).unpack

    def __call__(self, words: Sequence[int]) -> dict[str, float | None]:
        if len(words) < self.count:
            raise ValueError(f"short answer: {len(words)} of {self.count} registers")
        try:
            data = self._pack(*self._take(words))
        except struct.error:
            bad = next(w for w in words if not 0 <= w <= 0xFFFF)
            raise ValueError(f"register value {bad} is not 16-bit") from None
        values: dict[str, float | None] = {}
        for (name, start, end, f32, scale, na, rounding), value in zip(
            self._fields, self._unpack(data), strict=True
        ):
            if na and int.from_bytes(data[start:end], "big") in na:
                values[name] = None
                continue
            if f32:
                value = shortest_f32(value, data[start:end])
            result = float(value) * scale
            if not math.isfinite(result):
                values[name] = None
                continue
            if rounding is not None:
                digits = decimals(repr(value)) if f32 else 0
                result = round(result, digits + rounding)
            values[name] = result
        return values
