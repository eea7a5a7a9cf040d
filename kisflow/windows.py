"""Event-time windows: ``windows.tumbling``, ``sliding`` and ``session`` for a FaaS.

A window belongs to a FaaS's registration (``@kf.faas("PerMinute",
window=windows.tumbling(60, time="ts", key="user", grace=5))``); the stage stays a
Calculate (or Expand) stage. Its rows are assigned to windows by event time and key; a
window closes when the watermark (the highest event time seen, minus ``grace``) reaches
its end, and the FaaS is then called once with that window's rows in event-time order,
``flow.window()`` telling it the key, start and end.

Windows are half-open ``[start, end)``, aligned to event time 0: a tumbling window of
``size`` starts at ``floor(ts / size) * size``; sliding windows start at multiples of
``every``; a session starts at its first event and ends ``gap`` after its last.

A row is late only when its window has already closed (for sliding windows: when every
window it belongs to has closed); a late row goes to the stage's dead-letter sink with
reason ``late`` (no sink: an error, like any rejected row). A row without a usable
event time (missing, not a finite number) or key is rejected the same way.

In ``flow.run(rows)`` the rows are one bounded stream: the windows still open when the
stage's input ends close then. In a stream the open windows stay between batches and are
saved with the checkpoint.
"""

from __future__ import annotations

import contextvars
import heapq
import inspect
import math
import operator
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, NamedTuple, Protocol

import attrs

from kisflow.errors import ConfigError, FaaSSignatureError, KisFlowError
from kisflow.state import decode, encode


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


__all__ = [
    "Session",
    "Sliding",
    "Tumbling",
    "LateRow",
    "Window",
    "WindowSpec",
    "Windows",
    "current",
    "session",
    "sliding",
    "tumbling",
]

Field = str | Callable[[Any], Any]
"""How to read a row's event time or key: a field name (mapping key or attribute) or a
callable taking the row."""


class Window(NamedTuple):
    """The window a window FaaS call is closing: ``flow.window()`` (a tuple: cheap per call)."""

    key: Any
    start: float
    end: float
    kind: str = "tumbling"


_CURRENT: contextvars.ContextVar[list[Window | None] | None] = contextvars.ContextVar(
    "kisflow_window", default=None
)
"""A window stage call's slot: set once per stage call, its item set per window call."""

_new_window: Callable[[type[Window], tuple[Any, ...]], Window] = tuple.__new__


def current() -> Window | None:
    """The window the FaaS running in this context is called for, or None."""
    slot = _CURRENT.get()
    return None if slot is None else slot[0]


def _positive(name: str, value: Any, *, zero: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"window {name} must be a number, got {value!r}", key=name)
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        bound = "≥ 0" if zero else "> 0"
        raise ConfigError(f"window {name} must be finite and {bound}, got {value!r}", key=name)
    return value


def _field(name: str, value: Any) -> Field | None:
    if value is None and name == "key":
        return None
    if isinstance(value, str) and value:
        return value
    if callable(value):
        return value  # type: ignore[no-any-return]
    raise ConfigError(
        f"window {name}= must be a field name or a callable taking the row, got {value!r}",
        key=name,
    )


def _getter(field: Field) -> Callable[[Any], Any]:
    """A fast reader of ``field`` from a row: a mapping's key, else an attribute."""
    if callable(field):
        return field
    item = operator.itemgetter(field)
    attr = operator.attrgetter(field)

    def get(row: Any) -> Any:
        if isinstance(row, Mapping):
            return item(row)
        return attr(row)

    return get


def _fast_getter(field: Field) -> Callable[[Any], Any]:
    """Like ``_getter``, a dict's key read first (closing windows sort their rows by it)."""
    if callable(field):
        return field
    slow = _getter(field)

    def get(row: Any) -> Any:
        if type(row) is dict:
            return row[field]
        return slow(row)

    return get


@attrs.frozen
class WindowSpec:
    """What the windows of a FaaS are: kind, sizes, event-time field, key and grace."""

    kind: str
    size: float
    every: float
    time: Field
    key: Field | None
    grace: float

    def starts(self, ts: float) -> list[float]:
        """The starts of the fixed windows (tumbling, sliding) holding ``ts``, oldest first."""
        size = self.size
        if self.kind == "tumbling":
            return [math.floor(ts / size) * size]
        every = self.every
        last = math.floor(ts / every) * every
        out = []
        start = last
        while start > ts - size:
            out.append(start)
            start -= every
        out.reverse()
        return out

    def check_rows_type(self, fname: str, rows_type: Any) -> None:
        """Refuse a time or key field name the declared row type does not have."""
        names = _field_names(rows_type)
        if names is None:
            return
        for what, field in (("time", self.time), ("key", self.key)):
            if isinstance(field, str) and field not in names:
                raise FaaSSignatureError(
                    fname,
                    f"has window {what}={field!r}, but its rows "
                    f"({getattr(rows_type, '__name__', rows_type)}) have no field {field!r} "
                    f"(fields: {', '.join(sorted(names))})",
                )


def _field_names(tp: Any) -> set[str] | None:
    if isinstance(tp, type) and attrs.has(tp):
        return {f.name for f in attrs.fields(tp)}
    fields = getattr(tp, "__dataclass_fields__", None)
    if isinstance(fields, dict):
        return set(fields)
    return None


class Tumbling(WindowSpec):
    """Windows of ``size`` back to back: ``[k*size, (k+1)*size)``."""


class Sliding(WindowSpec):
    """Windows of ``size`` starting every ``every``; a row is in ``size/every`` of them."""


class Session(WindowSpec):
    """Per key, a window from the first event to ``gap`` after the last one."""


def tumbling(
    size: float, *, time: Field, key: Field | None = None, grace: float = 0.0
) -> WindowSpec:
    """Tumbling windows of ``size`` (event-time units, e.g. seconds) per ``key``."""
    return Tumbling(
        "tumbling",
        _positive("size", size),
        _positive("size", size),
        _field("time", time),  # type: ignore[arg-type]
        _field("key", key),
        _positive("grace", grace, zero=True),
    )


def sliding(
    size: float, every: float, *, time: Field, key: Field | None = None, grace: float = 0.0
) -> WindowSpec:
    """Sliding windows of ``size`` starting at every multiple of ``every``."""
    size_f, every_f = _positive("size", size), _positive("every", every)
    if every_f > size_f:
        raise ConfigError(
            f"sliding window every={every!r} is longer than size={size!r}: rows between "
            f"windows would belong to none; use a tumbling window or a smaller every",
            key="every",
        )
    return Sliding(
        "sliding",
        size_f,
        every_f,
        _field("time", time),  # type: ignore[arg-type]
        _field("key", key),
        _positive("grace", grace, zero=True),
    )


def session(gap: float, *, time: Field, key: Field | None = None, grace: float = 0.0) -> WindowSpec:
    """Session windows per ``key``: a session ends ``gap`` after its last event."""
    return Session(
        "session",
        _positive("gap", gap),
        _positive("gap", gap),
        _field("time", time),  # type: ignore[arg-type]
        _field("key", key),
        _positive("grace", grace, zero=True),
    )


# -- the windows of one stage ----------------------------------------------------------------


Closed = tuple[Any, Any, Any, list[Any], "list[int] | None", bool]
"""A window that closed: (key, start, end, rows in arrival order, a session's arrivals,
whether its rows may be out of event-time order)."""


class _Open:
    """An open window: its key, bounds and rows in arrival order.

    A session also keeps each row's arrival number (``seqs``): merged sessions' rows are
    put in event-time order, arrival order among equal times, when the session closes.
    """

    __slots__ = ("end", "key", "last", "rows", "seqs", "start")

    def __init__(self, key: Any, start: float, end: float) -> None:
        self.key = key
        self.start = start
        self.end = end
        self.last = start
        """A session's last event time (its end is ``last + gap``)."""
        self.rows: list[Any] = []
        self.seqs: list[int] | None = None


_UNPLACED: Any = object()
"""A row that went nowhere (rejected before its window was looked up)."""


def _hashable_key(key: Any) -> bool:
    try:
        hash(key)
    except TypeError:
        return False
    return True


class LateRow(KisFlowError, ValueError):
    """Why a row is late: its window closed before it came (a dead letter's reason).

    Its letter has ``reason="late"``; ``key``, ``start``, ``end`` and ``watermark`` say
    which window had closed and how far event time had got.
    """

    def __init__(self, key: Any, start: float, end: float, watermark: float) -> None:
        self.key = key
        self.start = start
        self.end = end
        self.watermark = watermark
        super().__init__(
            f"late: window [{start:g}, {end:g}) of key {key!r} closed (watermark {watermark:g})"
        )


class Windows:
    """The open windows of one window stage, its watermark, and what closes when.

    ``add(rows)`` assigns rows and returns the windows the rows' event times closed
    (oldest end first) and the rows found late or without time/key; ``close_all``
    closes the rest. A window stage's state part: ``snapshot``/``restore`` save it.
    """

    def __init__(self, spec: WindowSpec, name: str = "") -> None:
        self.spec = spec
        self.name = name
        self.lock = threading.Lock()
        self.broken: BaseException | None = None
        """Set when a FaaS call failed half-way in a stream (see ``windowed``)."""
        self.max_time = -math.inf
        self._open: dict[tuple[Any, Any], Any] = {}
        """Fixed windows by (key, start); sessions by (key, start) too."""
        self._sessions: dict[Hashable, list[_Open]] = {}
        """A key's open sessions (session windows only)."""
        self._closed_end: dict[Hashable, float] = {}
        """Each key's latest closed session's end: an event before it is late. Kept for
        every key seen (an event may join an open session reaching back past it)."""
        self._ends: list[tuple[float, float, int, tuple[Any, Any]]] = []
        """Sessions: heap of (end, start, sequence, id) of open sessions; stale skipped."""
        self._end_heap: list[float] = []
        """Fixed windows: heap of the distinct ends of open windows."""
        self._by_end: dict[float, list[tuple[Any, Any]]] = {}
        self._unsorted: set[tuple[Any, Any]] = set()
        self._slots: dict[Any, dict[Any, list[Any]]] = {}
        """Tumbling windows: start -> key -> rows (one dict per start: no tuple per row)."""
        self._start_heap: list[Any] = []
        """Tumbling windows: heap of the starts of open windows."""
        """Fixed windows that took a row not after every earlier one: sorted at close."""
        """Fixed windows: the windows ending at each end, in the order they opened."""
        self._seq = 0
        self._time = _getter(spec.time)
        self._key = _getter(spec.key) if spec.key is not None else None
        self._sort_time = _fast_getter(spec.time)
        self._item = operator.itemgetter(spec.time) if isinstance(spec.time, str) else None

    @property
    def watermark(self) -> float:
        """The highest event time seen minus grace (-inf before the first row)."""
        return self.max_time - self.spec.grace

    def __len__(self) -> int:
        return len(self._open) + sum(len(slot) for slot in self._slots.values())

    def add(self, rows: Iterable[Any]) -> tuple[list[Closed], list[tuple[Any, str | LateRow]]]:
        """Assign ``rows`` in arrival order; the windows closed and the rows rejected."""
        closed: list[Closed] = []
        rejected: list[tuple[Any, str | LateRow]] = []
        spec = self.spec
        if spec.kind == "tumbling" and isinstance(spec.time, str) and not callable(spec.key):
            self._add_tumbling(rows, closed, rejected)
        else:
            self._add_rows(rows, closed, rejected)
        return closed, rejected

    def _add_tumbling(
        self,
        rows: Iterable[Any],
        closed: list[Closed],
        rejected: list[tuple[Any, str | LateRow]],
    ) -> None:
        """``add`` for tumbling windows on dict rows named by fields: the hot loop.

        Anything unusual (a row that is no dict, a missing field, a time that is no finite
        number, an unhashable key) goes through ``_add_rows``, which says why it is rejected.
        """
        spec = self.spec
        tname, kname = spec.time, spec.key
        assert isinstance(tname, str)
        assert kname is None or isinstance(kname, str)
        size, grace = spec.size, spec.grace
        slots, start_heap = self._slots, self._start_heap
        max_time = self.max_time
        floor, heappush = math.floor, heapq.heappush
        unsorted = self._unsorted
        trigger = self._next_end() + grace  # the event time that closes the next window
        lo, hi = math.inf, -math.inf  # the window of the row before: [lo, hi)
        slot: dict[Any, list[Any]] | None = None
        for row in rows:
            try:
                ts = row[tname]  # raises for a row that is no mapping
                key = row[kname] if kname is not None else None
                if lo <= ts < hi:  # raises for a time that is no number
                    start = lo
                else:
                    start = floor(ts / size) * size  # raises for inf and NaN
                    lo, hi = start, start + size
                    slot = slots.get(start)
                win = slot.get(key) if slot is not None else None  # raises: unhashable key
            except Exception:
                self.max_time = max_time
                self._add_rows((row,), closed, rejected)
                max_time = self.max_time
                trigger = self._next_end() + grace
                lo, hi, slot = math.inf, -math.inf, None
                continue
            if ts > max_time:
                # A row that moves event time on is never late: its window ends after it,
                # so the windows this closes are not the row's own (``slot`` stays open).
                max_time = ts
                if ts >= trigger:
                    self.max_time = max_time
                    closed.extend(self._close(ts - grace))
                    trigger = self._next_end() + grace
            elif hi + grace <= max_time:
                rejected.append((row, LateRow(key, start, hi, max_time - grace)))
                continue
            else:
                unsorted.add((key, start))  # not after every earlier row: sorted at close
            if win is not None:
                win.append(row)
                continue
            if slot is None:
                slot = slots[start] = {}
                heappush(start_heap, start)
                if hi + grace < trigger:
                    trigger = hi + grace
            try:
                slot[key] = [row]
            except TypeError:
                rejected.append((row, f"key is not hashable: {type(key).__name__} {key!r}"))
        self.max_time = max_time

    def _add_rows(
        self,
        rows: Iterable[Any],
        closed: list[Closed],
        rejected: list[tuple[Any, str | LateRow]],
    ) -> None:
        """``add`` for any window kind and row (fields read through the getters)."""
        spec = self.spec
        grace = spec.grace
        get_time, get_key = self._time, self._key
        session = spec.kind == "session"
        tumbling = spec.kind == "tumbling"
        size = spec.size
        opened = self._open
        max_time = self.max_time
        next_end = self._next_end()
        floor = math.floor
        tname = spec.time if isinstance(spec.time, str) else None
        kname = spec.key if isinstance(spec.key, str) else None
        no_key = spec.key is None
        for row in rows:
            # Read time and key: a dict by its keys inline (the common case), else the getters.
            # ``ts - ts`` is 0 for a finite number, NaN for inf/NaN, TypeError for the rest.
            try:
                if type(row) is dict and tname is not None:
                    ts = row[tname]
                    key = None if no_key else row[kname] if kname is not None else get_key(row)  # type: ignore[misc]
                else:
                    ts = get_time(row)
                    key = get_key(row) if get_key is not None else None
            except Exception as exc:  # a row without the field
                rejected.append((row, f"no event time or key: {type(exc).__name__}: {exc}"))
                continue
            tt = type(ts)
            if not ((tt is float and ts - ts == 0.0) or tt is int) and (
                not isinstance(ts, (int, float)) or not math.isfinite(ts)
            ):
                rejected.append((row, f"event time is not a finite number: {ts!r}"))
                continue
            if ts > max_time:
                max_time = ts
            watermark = max_time - grace
            if tumbling:
                start = floor(ts / size) * size
                end = start + size
                if not _hashable_key(key):
                    rejected.append((row, f"key is not hashable: {type(key).__name__} {key!r}"))
                elif end <= watermark:
                    rejected.append((row, self._late(key, start, end, watermark)))
                else:
                    slot = self._slots.get(start)
                    if slot is None:
                        slot = self._slots[start] = {}
                        heapq.heappush(self._start_heap, start)
                        if end < next_end:
                            next_end = end
                    rows_of = slot.get(key)
                    if rows_of is None:
                        slot[key] = [row]
                    else:
                        rows_of.append(row)
                    self._unsorted.add((key, start))
            elif not _hashable_key(key):
                rejected.append((row, f"key is not hashable: {type(key).__name__} {key!r}"))
            elif session:
                if not self._add_session(key, ts, row, watermark):
                    rejected.append((row, self._late(key, ts, ts + size, watermark)))
                next_end = self._next_end()
            else:
                placed = False
                for start in spec.starts(ts):
                    end = start + size
                    if end <= watermark:
                        continue
                    win = opened.get((key, start))
                    if win is None:
                        win = opened[(key, start)] = []
                        self._index((key, start), end)
                        if end < next_end:
                            next_end = end
                    win.append(row)
                    self._unsorted.add((key, start))
                    placed = True
                if not placed:
                    last = spec.starts(ts)[-1]
                    rejected.append((row, self._late(key, last, last + size, watermark)))
            if next_end <= watermark:
                self.max_time = max_time
                closed.extend(self._close(watermark))
                next_end = self._next_end()
        self.max_time = max_time

    def _late(self, key: Any, start: float, end: float, watermark: float) -> LateRow:
        return LateRow(key, start, end, watermark)

    def _add_session(self, key: Any, ts: float, row: Any, watermark: float) -> bool:
        """Put an event in its key's session, merging the sessions it joins; False if late.

        An event joins a session when it lies within ``gap`` of it (``start - gap < ts <
        last + gap``); one that joins none starts a session unless that session would
        already be closed (``ts + gap <= watermark``) or the event lies before the end of
        a session of its key that closed: then it is late.
        """
        gap = self.spec.size
        if ts < self._closed_end.get(key, -math.inf):
            return False  # in (or joining) a session of its key that already closed
        sessions = self._sessions.get(key)
        hits = [s for s in sessions if s.start - gap < ts < s.last + gap] if sessions else []
        if not hits:
            if ts + gap <= watermark:
                return False
            win = _Open(key, ts, ts + gap)
            win.last = ts
            win.rows.append(row)
            win.seqs = [self._arrival()]
            self._sessions.setdefault(key, []).append(win)
            self._open[(key, ts)] = win
            self._push(win)
            return True
        assert sessions is not None
        first = hits[0]
        before = (first.start, first.end)
        del self._open[(key, first.start)]
        for other in hits[1:]:
            sessions.remove(other)
            del self._open[(key, other.start)]
            first.rows.extend(other.rows)
            assert first.seqs is not None
            assert other.seqs is not None
            first.seqs.extend(other.seqs)
            first.start = min(first.start, other.start)
            first.last = max(first.last, other.last)
        first.rows.append(row)
        assert first.seqs is not None
        first.seqs.append(self._arrival())
        first.start = min(first.start, ts)
        first.last = max(first.last, ts)
        first.end = first.last + gap
        self._open[(key, first.start)] = first
        if (first.start, first.end) != before:
            self._push(first)
        return True

    def _arrival(self) -> int:
        self._seq += 1
        return self._seq

    def ordered(self, rows: list[Any], seqs: list[int] | None) -> list[Any]:
        """A closing window's rows in event-time order (arrival order among equal times)."""
        if seqs is None:
            # Stable, and linear when already in order; a dict's field read in C.
            if self._item is not None:
                try:
                    rows.sort(key=self._item)
                except (TypeError, KeyError, IndexError):
                    rows.sort(key=self._sort_time)
            else:
                rows.sort(key=self._sort_time)
            return rows
        times = [self._sort_time(r) for r in rows]
        order = sorted(range(len(rows)), key=lambda i: (times[i], seqs[i]))
        return [rows[i] for i in order]

    def _push(self, win: _Open) -> None:
        self._seq += 1
        heapq.heappush(self._ends, (win.end, win.start, self._seq, (win.key, win.start)))

    def _index(self, ident: tuple[Any, Any], end: float) -> None:
        """File a new fixed window (its rows list, by ``(key, start)``) under its end."""
        same_end = self._by_end.get(end)
        if same_end is None:
            self._by_end[end] = [ident]
            heapq.heappush(self._end_heap, end)
        else:
            same_end.append(ident)

    def _next_end(self) -> float:
        """The earliest end of an open window (inf when none is open)."""
        kind = self.spec.kind
        if kind == "tumbling":
            return self._start_heap[0] + self.spec.size if self._start_heap else math.inf
        if kind == "session":
            return self._ends[0][0] if self._ends else math.inf
        return self._end_heap[0] if self._end_heap else math.inf

    def _close(self, watermark: float) -> list[Closed]:
        """Pop every open window whose end the watermark reached, oldest end first."""
        out: list[Closed] = []
        opened = self._open
        if self.spec.kind == "tumbling":
            size, starts, slots = self.spec.size, self._start_heap, self._slots
            unsorted = self._unsorted
            while starts and starts[0] + size <= watermark:
                start = heapq.heappop(starts)
                end = start + size
                for key, rows in slots.pop(start).items():
                    if unsorted and (key, start) in unsorted:
                        unsorted.discard((key, start))
                        out.append((key, start, end, rows, None, True))
                    else:
                        out.append((key, start, end, rows, None, False))
            return out
        if self.spec.kind != "session":
            heap, by_end = self._end_heap, self._by_end
            pop = opened.pop
            while heap and heap[0] <= watermark:
                end = heapq.heappop(heap)
                unsorted = self._unsorted
                for i in by_end.pop(end):
                    if i in unsorted:
                        unsorted.discard(i)
                        out.append((i[0], i[1], end, pop(i), None, True))
                    else:
                        out.append((i[0], i[1], end, pop(i), None, False))
            return out
        ends = self._ends
        while ends and ends[0][0] <= watermark:
            end, start, _, sid = heapq.heappop(ends)
            session: _Open | None = opened.get(sid)
            if session is None or session.end != end or session.start != start:
                continue  # stale: merged or extended since
            win = session
            del opened[sid]
            sessions = self._sessions[win.key]
            sessions.remove(win)
            if not sessions:
                del self._sessions[win.key]
            closed_end = self._closed_end
            if closed_end.get(win.key, -math.inf) < end:
                closed_end[win.key] = end
            out.append((win.key, win.start, win.end, win.rows, win.seqs, True))
        return out

    def close_all(self) -> list[Closed]:
        """Close every open window (the end of a bounded input), oldest end first."""
        return self._close(math.inf)

    # -- saved with a checkpoint ------------------------------------------------------------

    def snapshot(self) -> Any:
        """The open windows and the watermark as JSON data."""
        if self.spec.kind == "session":
            wins = [
                [encode(w.key), w.start, w.end, w.last, [encode(r) for r in w.rows], w.seqs]
                for w in self._open.values()
            ]
        elif self.spec.kind == "tumbling":
            size = self.spec.size
            wins = [
                [encode(k), start, start + size, start, [encode(r) for r in rows], None]
                for start, slot in self._slots.items()
                for k, rows in slot.items()
            ]
        else:
            size = self.spec.size
            wins = [
                [encode(k), start, start + size, start, [encode(r) for r in rows], None]
                for (k, start), rows in self._open.items()
            ]
        closed = [[encode(k), e] for k, e in self._closed_end.items()]
        max_time = None if self.max_time == -math.inf else self.max_time
        return {"max_time": max_time, "open": wins, "closed": closed}

    def restore(self, data: Any) -> None:
        """Replace the open windows by a ``snapshot``."""
        self._open = {}
        self._sessions = {}
        self._ends = []
        self._end_heap = []
        self._by_end = {}
        self._unsorted = set()
        self._slots = {}
        self._start_heap = []
        self._closed_end = {_hashable(decode(k)): e for k, e in data.get("closed", ())}
        mt = data.get("max_time")
        self.max_time = -math.inf if mt is None else float(mt)
        for key_data, start, end, last, rows, seqs in data["open"]:
            key = decode(key_data)
            if isinstance(key, list):
                key = tuple(key)
            if self.spec.kind == "tumbling":
                slot = self._slots.get(start)
                if slot is None:
                    slot = self._slots[start] = {}
                    heapq.heappush(self._start_heap, start)
                slot[key] = [decode(r) for r in rows]
                self._unsorted.add((key, start))
                continue
            if self.spec.kind != "session":
                self._open[(key, start)] = [decode(r) for r in rows]
                self._index((key, start), end)
                self._unsorted.add((key, start))
                continue
            win = _Open(key, start, end)
            win.last = last
            win.rows = [decode(r) for r in rows]
            win.seqs = seqs
            if seqs:
                self._seq = max(self._seq, *seqs)
            self._open[(key, start)] = win
            self._sessions.setdefault(key, []).append(win)
            self._push(win)


class WindowFlow(Protocol):
    """What a window stage's wrapper calls on the flow it is given."""

    def dead_letter(self, row: Any, reason: str | BaseException = ...) -> None:
        """Reject ``row`` (a late row, a row without event time)."""

    def commit_row_batch(self, rows: Iterable[Any], /, copy: bool = True) -> None:
        """Commit rows a generator FaaS yielded."""


class StateParts(Protocol):
    """Where a stream's window stages keep their windows (``kisflow.state.StateStore``)."""

    def part(self, key: str, make: Callable[[str], Any]) -> Any:
        """The state part ``key``, made by ``make(key)`` on first use."""


def windowed(
    spec: WindowSpec,
    fn: Callable[..., Any],
    *,
    asynchronous: bool,
    state_key: str,
    store: StateParts,
    streaming: Callable[[], bool],
) -> Callable[..., Any]:
    """``fn`` as a window stage's FaaS: assign the stage's rows, call ``fn`` per closed window.

    In a plain run the windows live for the call and all close at its end; when
    ``streaming()`` is true (a stream's batch) they live in ``store`` between batches.
    """

    def windows_for() -> Windows:
        if streaming():
            wins: Windows = store.part(state_key, lambda key: Windows(spec, key))
            if wins.broken is not None:
                raise RuntimeError(
                    f"the open windows of stage {state_key!r} are inconsistent after a "
                    f"failed call ({type(wins.broken).__name__}: {wins.broken}); resume "
                    f"the stream from its checkpoint"
                ) from wins.broken
            return wins
        return Windows(spec, state_key)

    def closing(wins: Windows, flow: WindowFlow, rows: list[Any]) -> list[Closed]:
        closed, rejected = wins.add(rows)
        for row, reason in rejected:
            flow.dead_letter(row, reason)
        if not streaming():
            closed.extend(wins.close_all())
        return closed

    kind = spec.kind
    if asynchronous:

        async def call_async(*args: Any) -> None:
            wins = windows_for()
            flow, rows = args[-2], args[-1]
            head = args[:-1]
            slot: list[Window | None] = [None]
            token = _CURRENT.set(slot)
            with wins.lock:
                try:
                    for key, start, end, ordered, seqs, mixed in closing(wins, flow, rows):
                        slot[0] = Window(key, start, end, kind)
                        await fn(*head, wins.ordered(ordered, seqs) if mixed else ordered)
                except BaseException as exc:
                    wins.broken = exc
                    raise
                finally:
                    _CURRENT.reset(token)

        return call_async

    def call(*args: Any) -> None:
        wins = windows_for()
        flow, rows = args[-2], args[-1]
        head = args[:-1]
        slot: list[Window | None] = [None]
        token = _CURRENT.set(slot)  # once per stage call; each window call fills the slot
        item = wins._item
        with wins.lock:
            try:
                for key, start, end, ordered, seqs, mixed in closing(wins, flow, rows):
                    slot[0] = _new_window(Window, (key, start, end, kind))
                    if not mixed:
                        pass
                    elif seqs is None and item is not None:
                        try:
                            ordered.sort(key=item)  # stable; linear when already in order
                        except (TypeError, KeyError, IndexError):
                            ordered = wins.ordered(ordered, None)
                    else:
                        ordered = wins.ordered(ordered, seqs)
                    out = fn(*head, ordered)
                    if out is not None and inspect.isgenerator(out):
                        flow.commit_row_batch(out)
            except BaseException as exc:
                wins.broken = exc
                raise
            finally:
                _CURRENT.reset(token)

    return call
