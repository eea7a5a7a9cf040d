"""Config files' YAML, read safely: plain data only, within limits, no key given twice.

``load(text)`` builds the document straight from the parser's events (libyaml's C
parser when PyYAML has it, else PyYAML's own), with no recursion and no node tree:

- only plain data: mappings, lists, strings, numbers, booleans, null, timestamps (no
  ``!!python/...`` or other tags, which could build objects);
- at most ``MAX_DEPTH`` nested mappings and lists, counted through aliases;
- at most ``MAX_ALIASES`` aliases (``*name``), which together may repeat at most
  ``MAX_ALIAS_EXPANSION`` values and characters; an alias inside what it names is
  refused. So an alias bomb fails in milliseconds, whatever key it sits under;
- a key given twice in one mapping is refused, naming both lines (YAML says keys are
  unique; the last silently won before);
- integers of at most ``MAX_INT_DIGITS`` digits (Python's own limit for ``int(str)``).

Every refusal is a ``ConfigError`` naming the line and, where there is one, the dotted
key (``flows[3].params``); the caller adds the file. ``MAX_FILE_BYTES`` caps a file's
size before it is read. ``depth(value)`` measures a value as ``load`` counts it, so
export refuses what load would.
"""

from __future__ import annotations

import sys
from typing import Any, Final

import yaml

from kisflow.errors import ConfigError

__all__ = [
    "C_LOADER",
    "MAX_ALIASES",
    "MAX_ALIAS_EXPANSION",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_INT_DIGITS",
    "Refused",
    "depth",
    "load",
]

MAX_FILE_BYTES: Final = 32 * 1024 * 1024
"""The largest config file read (32 MiB); a bigger one is refused unread."""

MAX_DEPTH: Final = 64
"""Mappings and lists nested in one another, the file's top mapping being the first."""

MAX_ALIASES: Final = 10_000
"""Aliases (``*name``) one file may use."""

MAX_ALIAS_EXPANSION: Final = 1_000_000
"""What the aliases of one file may repeat in all: each value (a mapping, list or
scalar) counts one, and each character of a string or number one more."""

MAX_INT_DIGITS: Final = 4300
"""The longest integer accepted (Python's default ``sys.get_int_max_str_digits()``)."""

C_LOADER: Final = bool(getattr(yaml, "__with_libyaml__", False))
"""Whether libyaml's C parser is used (PyYAML built with it); the checks are the same."""

_Loader: Any = yaml.CSafeLoader if C_LOADER else yaml.SafeLoader

_PREFIX = "tag:yaml.org,2002:"
_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_INT = "tag:yaml.org,2002:int"
_SCALARS: Final = frozenset(
    "tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "timestamp")
)
"""The scalar tags a config may hold (implicit or explicit); the safe loader's own."""


class _Open:
    """A mapping or list being built: its value, anchor, size and height so far."""

    __slots__ = (
        "anchor",
        "height",
        "is_map",
        "key",
        "key_line",
        "lines",
        "mark",
        "merges",
        "size",
        "value",
    )

    def __init__(self, value: Any, anchor: str | None, mark: Any) -> None:
        self.value = value
        self.is_map = isinstance(value, dict)
        self.anchor = anchor
        self.mark = mark
        self.size = 1
        self.height = 1
        self.key: Any = _NO_KEY
        """The key whose value is being read (a mapping), else ``_NO_KEY``."""
        self.key_line = 0
        self.lines: dict[Any, int] = {}
        """The line of each key given (a mapping), for the "given twice" report."""
        self.merges: list[dict[Any, Any]] = []
        """Mappings merged in with ``<<:``; keys given in the mapping win over them."""


_NO_KEY: Final = object()
_MERGE_KEY: Final = object()
"""Stands for the key ``<<`` while a mapping is built."""


def _path(stack: list[_Open]) -> str | None:
    """The dotted key of what is being read (``flows[3].params``), None at the top."""
    parts: list[str] = []
    for frame in stack:
        if not frame.is_map:
            parts.append(f"[{len(frame.value)}]")
        elif frame.key is _MERGE_KEY:
            parts.append(".<<")
        elif frame.key is not _NO_KEY:
            parts.append(f".{str(frame.key)[:80]}")
    return "".join(parts).lstrip(".") or None


class Refused(ConfigError):
    """What ``load`` refuses: ``reason``, at ``line`` (1-based), under ``key`` (dotted)."""

    def __init__(self, reason: str, *, line: int, key: str | None) -> None:
        shown = key if key is None or len(key) <= 100 else "..." + key[-100:]
        super().__init__(f"line {line}{f' ({shown})' if shown else ''}: {reason}", key=key)
        self.reason = reason
        self.line = line


def _refuse(reason: str, mark: Any, stack: list[_Open]) -> Refused:
    """The error for one refusal, at the mark's line and the key path being read."""
    return Refused(reason, line=mark.line + 1, key=_path(stack))


def _not_allowed(tag: str) -> str:
    """Why a tag is refused, naming it as written in YAML (``!!python/object``)."""
    shown = "!!" + tag[len(_PREFIX) :] if tag.startswith(_PREFIX) else tag
    return f"the tag {shown[:100]} is not allowed in a config file (plain data only)"


def _scalar(loader: Any, event: Any, tag: str, stack: list[_Open]) -> Any:
    """A scalar that is not a plain string: checked, then made by the safe constructor."""
    value = event.value
    if tag == _MERGE:
        return _MERGE_KEY
    if tag not in _SCALARS:
        raise _refuse(_not_allowed(tag), event.start_mark, stack)
    if tag == _INT:
        plain = value.isascii() and value.isdigit() and (value[0] != "0" or len(value) == 1)
        if plain and len(value) <= MAX_INT_DIGITS:
            return int(value)  # the common case, read as the constructor reads it
        digits = sum(c.isdigit() for c in value)
        if digits > MAX_INT_DIGITS:  # refused before int() would refuse it
            raise _refuse(
                f"is an integer of {digits} digits; at most {MAX_INT_DIGITS} are allowed",
                event.start_mark,
                stack,
            )
    node = yaml.ScalarNode(tag, value, event.start_mark, event.end_mark, event.style)
    try:
        result = loader.yaml_constructors[tag](loader, node)
    except (ValueError, OverflowError, yaml.YAMLError) as exc:
        raise _refuse(
            f"is not a valid {tag.rsplit(':', 1)[-1]}: {str(exc)[:200]}", event.start_mark, stack
        ) from exc
    if tag == _INT and abs(result) >= _TOO_LONG:  # 0x..., 0b..., 1:30:...: as long
        raise _refuse(
            f"is an integer of more than {MAX_INT_DIGITS} digits; at most {MAX_INT_DIGITS} "
            f"are allowed",
            event.start_mark,
            stack,
        )
    return result


_TOO_LONG: Final = 10**MAX_INT_DIGITS
"""The smallest integer of more than ``MAX_INT_DIGITS`` digits."""


def _build(loader: Any, stack: list[_Open]) -> Any:
    """The document of the loader's events as plain data, within this module's limits.

    One loop over the events with an explicit ``stack`` (no recursion; the caller's, so
    it can see what was read when this fails). An alias reuses the value its anchor
    named, as PyYAML does, and counts what that value holds: sizes and heights are kept
    while an anchored value is open (only those are ever read).
    """
    get_event = loader.get_event
    resolve = loader.resolve
    resolvers = loader.yaml_implicit_resolvers  # first character -> the tags it may start
    wildcard = bool(resolvers.get(None))  # resolvers for any first character: none by default
    scalar_node = yaml.ScalarNode
    scalar_event, alias_event = yaml.ScalarEvent, yaml.AliasEvent
    map_start, seq_start = yaml.MappingStartEvent, yaml.SequenceStartEvent
    map_end, seq_end = yaml.MappingEndEvent, yaml.SequenceEndEvent
    tags: dict[str, str] = {}  # plain scalar -> its resolved tag, for repeated keys
    anchors: dict[str, tuple[Any, int, int]] = {}  # anchor -> (value, size, height)
    anchored = 0  # anchored values open: while there is one, sizes are counted
    aliases = expanded = documents = 0
    result: Any = None
    while True:
        event = get_event()
        kind = type(event)
        # Each branch leaves the finished value with its size and height, or continues.
        if kind is scalar_event:
            value = event.value
            tag = event.tag
            if tag is None or tag == "!":
                if event.implicit[0] and (wildcard or resolvers.get(value[:1])):  # maybe no str
                    tag = tags.get(value)
                    if tag is None:
                        tag = tags[value] = resolve(scalar_node, value, event.implicit)
                    if tag != _STR:
                        value = _scalar(loader, event, tag, stack)
            elif tag != _STR:
                value = _scalar(loader, event, tag, stack)
            size = height = 0
            if anchored or event.anchor is not None:
                size = 1 + len(event.value)
                if event.anchor is not None:
                    if event.anchor in anchors or any(f.anchor == event.anchor for f in stack):
                        raise _refuse(_twice(event.anchor), event.start_mark, stack)
                    anchors[event.anchor] = (value, size, 0)
        elif kind is map_end or kind is seq_end:
            frame = stack.pop()
            value = frame.value
            if frame.merges:
                merged: dict[Any, Any] = {}
                for source in reversed(frame.merges):  # the first merged mapping wins
                    merged.update(source)
                merged.update(value)
                value = merged
            size, height = frame.size, frame.height
            if frame.anchor is not None:
                anchors[frame.anchor] = (value, size, height)
                anchored -= 1
        elif kind is map_start or kind is seq_start:
            tag = event.tag
            if tag is not None and tag != "!" and tag != (_MAP if kind is map_start else _SEQ):
                raise _refuse(_not_allowed(tag), event.start_mark, stack)
            if len(stack) >= MAX_DEPTH:
                raise _refuse(
                    f"is nested more than {MAX_DEPTH} levels deep", event.start_mark, stack
                )
            stack.append(_Open({} if kind is map_start else [], event.anchor, event.start_mark))
            if event.anchor is not None:
                if event.anchor in anchors or any(f.anchor == event.anchor for f in stack[:-1]):
                    raise _refuse(_twice(event.anchor), event.start_mark, stack)
                anchored += 1
            continue
        elif kind is alias_event:
            found = anchors.get(event.anchor)
            if found is None:
                inside = any(frame.anchor == event.anchor for frame in stack)
                why = "is inside the value it names" if inside else "names no anchor before it"
                raise _refuse(f"the alias *{event.anchor} {why}", event.start_mark, stack)
            value, size, height = found
            aliases += 1
            expanded += size
            if aliases > MAX_ALIASES:
                raise _refuse(
                    f"the file uses more than {MAX_ALIASES:,} aliases", event.start_mark, stack
                )
            if expanded > MAX_ALIAS_EXPANSION:
                raise _refuse(
                    f"the file's aliases repeat more than {MAX_ALIAS_EXPANSION:,} values and "
                    f"characters (an alias bomb?)",
                    event.start_mark,
                    stack,
                )
            if len(stack) + height > MAX_DEPTH:
                raise _refuse(
                    f"is nested more than {MAX_DEPTH} levels deep (through *{event.anchor})",
                    event.start_mark,
                    stack,
                )
        elif kind is yaml.StreamEndEvent:
            return result
        elif kind is yaml.DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise _refuse(
                    "the file holds a second YAML document ('---'); a config file holds one",
                    event.start_mark,
                    [],
                )
            continue
        else:  # stream start, document end
            continue

        # Place the finished value in the open mapping or list.
        if not stack:
            result = value
            continue
        top = stack[-1]
        if anchored:
            top.size += size
            if height >= top.height:
                top.height = height + 1
        if not top.is_map:
            top.value.append("<<" if value is _MERGE_KEY else value)
            continue
        key = top.key
        if key is _NO_KEY:
            if type(value) in _CONTAINERS:
                raise _refuse(
                    "a key must be a plain value, not a mapping or list", event.start_mark, stack
                )
            top.key = value
            top.key_line = event.start_mark.line + 1
            continue
        top.key = _NO_KEY
        if value is _MERGE_KEY:
            value = "<<"
        if key is _MERGE_KEY:
            sources = value if isinstance(value, list) else [value]
            if not all(isinstance(source, dict) for source in sources):
                top.key = key
                raise _refuse("'<<' merges a mapping or a list of mappings", top.mark, stack)
            top.merges.extend(sources)
        elif key in top.value:
            top.key = key
            raise _refuse(
                f"the key {str(key)[:80]!r} is given twice in one mapping (lines "
                f"{top.lines[key]} and {top.key_line}); give it once",
                event.start_mark,
                stack,
            )
        else:
            top.value[key] = value
            top.lines[key] = top.key_line


_CONTAINERS: Final = (dict, list)


def _twice(anchor: str) -> str:
    return f"the anchor &{anchor} is given twice; give each anchor its own name"


def load(text: str, read: dict[Any, Any] | None = None) -> Any:
    """The one YAML document of ``text`` as plain data, or None when it holds none.

    When it fails and ``read`` is given, ``read`` gets the top mapping's keys read so far
    (``fname``, ``kistype``...), so the caller can tell what the file meant to define.

    Raises:
        Refused: (a ``ConfigError``) a limit of this module is exceeded, a tag other
            than plain data's, a key or anchor given twice; names the line and the key
            path (``key``).
        yaml.YAMLError: the text is not YAML (with the parser's mark).
    """
    loader = _Loader(text)
    stack: list[_Open] = []
    try:
        return _build(loader, stack)
    except (Refused, yaml.YAMLError):
        if read is not None and stack and stack[0].is_map:
            read.update(stack[0].value)
        raise
    finally:
        loader.dispose()


def depth(value: Any) -> int:
    """How deep ``value``'s mappings and lists nest (0 for a scalar), as ``load`` counts.

    Iterative and linear in the distinct containers (a value shared many times is
    measured once), so a value nested deeper than the recursion limit is measured too;
    one that contains itself counts as nested without end (``sys.maxsize``). Stops
    early, returning a number above ``MAX_DEPTH``, once that is certain.
    """
    if not isinstance(value, dict | list | tuple):
        return 0
    memo: dict[int, int] = {}
    inside: set[int] = {id(value)}
    # Frames: [container, its children, the deepest child so far].
    stack: list[list[Any]] = [[value, iter(_children(value)), 0]]
    while stack:
        frame = stack[-1]
        child = next(frame[1], _END)
        if child is _END:
            stack.pop()
            inside.discard(id(frame[0]))
            level = 1 + frame[2]
            memo[id(frame[0])] = level
            if stack:
                stack[-1][2] = max(stack[-1][2], level)
            continue
        if not isinstance(child, dict | list | tuple):
            continue
        known = memo.get(id(child))
        if known is not None:
            frame[2] = max(frame[2], known)
        elif id(child) in inside:
            return sys.maxsize
        elif len(stack) > MAX_DEPTH:
            return len(stack) + 1
        else:
            inside.add(id(child))
            stack.append([child, iter(_children(child)), 0])
    return memo[id(value)]


_END: Final = object()


def _children(value: dict[Any, Any] | list[Any] | tuple[Any, ...]) -> Any:
    return value.values() if isinstance(value, dict) else value
