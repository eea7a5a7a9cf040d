"""A JSON-lines file as a durable stream source: byte offsets, optional tailing, line numbers.

A span is the bytes ``[start, end)`` a chunk covers plus the number of its first line, so
``reread`` seeks and reads exactly those bytes again after a crash. A position is the
offset (and line number) after a span, with what identifies the file: its inode and a hash
of its first bytes. Reopening at a position of a file that was since truncated or replaced
is a ``SourceError`` naming the file, never a silent read from the wrong byte.

A line that is no row (not UTF-8, not JSON, nested too deep, an integer too long) is a
``BadRecord`` keeping its text and line number; blank lines are skipped (but covered by
spans, so offsets stay exact). ``decode_json_line`` is the one decoder of a JSON line,
shared with the CLI's plain JSON-lines stream.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, BinaryIO, overload

from kisflow.errors import SourceError
from kisflow.sources._base import BadRecord, Chunk, Source

__all__ = ["BLANK", "BadLine", "JsonLinesSource", "decode_json_line"]

_BOM = "\ufeff"
HEAD_BYTES = 4096
"""Bytes at the start of the file whose hash a position keeps (fewer while it is shorter)."""
_STREAM = -1
"""The file descriptor of a source reading a given stream (stdin) instead of its path."""
READ_SIZE = 1 << 20
"""Bytes read at a time: what the source holds read ahead, at most."""

BLANK: Any = object()
"""What ``decode_json_line`` returns for a blank line (no row)."""


class BadLine(ValueError):
    """A JSON line that is no row: ``problem`` says why (``is not JSON: ...``), ``text``
    is the line (backslash escapes where it is not UTF-8, without its line break)."""

    def __init__(self, problem: str, text: str) -> None:
        self.problem = problem
        self.text = text
        super().__init__(problem)


def decode_json_line(line: bytes | str, *, first: bool = False) -> Any:
    """The row a JSON line holds, or ``BLANK`` for a blank line.

    ``first`` says it is the file's first line (a UTF-8 byte-order mark is dropped).

    Raises:
        BadLine: the line is not UTF-8 or not JSON, nests deeper than the recursion
            limit, or holds an integer beyond Python's 4,300 digits (the cause chained).
    """
    if isinstance(line, bytes):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadLine(
                f"is not UTF-8 (byte {exc.start + 1}: {exc.reason})",
                line.decode("utf-8", "backslashreplace").rstrip("\r\n"),
            ) from exc
    else:
        text = line
    if first and text.startswith(_BOM):
        text = text[1:]
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if not text or text.isspace():
            return BLANK
        problem = f"is not JSON: {exc.msg} at column {exc.colno}"
        cause: BaseException = exc
    except RecursionError as exc:
        problem = "is nested too deeply to read as JSON"
        cause = exc
    except ValueError as exc:  # e.g. an integer beyond Python's 4,300 digits
        problem = f"cannot be read as JSON: {exc}"
        cause = exc
    raise BadLine(problem, text.rstrip("\r\n")) from cause


class _Wheres(Sequence[str]):
    """``orders.jsonl line 12`` for each row, made only when asked for (errors)."""

    __slots__ = ("_lines", "_name")

    def __init__(self, name: str, lines: list[int]) -> None:
        self._name = name
        self._lines = lines

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [f"{self._name} line {n}" for n in self._lines[index]]
        return f"{self._name} line {self._lines[index]}"

    def __len__(self) -> int:
        return len(self._lines)

    def __iter__(self) -> Iterator[str]:
        name = self._name
        return (f"{name} line {n}" for n in self._lines)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # a mutable-looking sequence, like list

    def __repr__(self) -> str:
        return f"<{len(self)} lines of {self._name}>"


class JsonLinesSource(Source):
    """The lines of a JSON-lines file, each a row; ``follow=True`` tails a growing file.

    Without ``follow`` the file is read as it is and ``read`` returns None at its end (a
    last line without a line break counts). With ``follow`` the source waits for more
    lines, polling every ``poll_interval`` seconds, and a last line is read only once its
    line break is written (so a writer's half-written line is never taken). Truncating
    or replacing a followed file is a ``SourceError``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        follow: bool = False,
        poll_interval: float = 0.05,
        name: str | None = None,
        stream: BinaryIO | None = None,
    ) -> None:
        """``name`` is how messages name the file (default: ``path``); ``stream`` an open
        binary file to read instead of opening ``path`` (stdin: not durable, no follow)."""
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval!r}")
        if stream is not None and follow:
            raise ValueError("a stream (stdin) cannot be followed: give a file path")
        self._name = os.fspath(path) if name is None else name
        self._path = os.path.abspath(os.fspath(path))
        self._stream = stream
        try:
            self.durable = stream is None and stat.S_ISREG(os.stat(self._path).st_mode)
        except OSError:  # not there yet: open() says so
            self.durable = True
        self.follow = follow
        self.poll_interval = poll_interval
        self._fd: int | None = None
        self._ino = 0
        self._offset = 0
        """File offset of the next line to hand out."""
        self._line = 1
        """Its line number."""
        self._ahead: list[bytes] = []
        """Complete lines read ahead, from ``_next`` on not yet handed out."""
        self._next = 0
        self._tail: list[bytes] = []
        """Bytes read after the last line break (in pieces: a long line is joined once)."""
        self._ended = False
        self._head = b""
        self._head_hashes: dict[int, str] = {}

    @property
    def key(self) -> str:
        """``jsonl:`` and the file's absolute path."""
        return f"jsonl:{self._path}"

    def describe(self) -> str:
        """The file as the user named it."""
        return self._name

    def __repr__(self) -> str:
        return f"JsonLinesSource({self._name!r}, follow={self.follow})"

    # -- opening, and knowing the file again ----------------------------------------------

    def _error(self, message: str, position: Any = None, *, retryable: bool = False) -> SourceError:
        return SourceError(
            f"{self._name}: {message}", source=self.key, position=position, retryable=retryable
        )

    def _open_fd(self, position: Any) -> int:
        try:
            return os.open(self._path, os.O_RDONLY)
        except FileNotFoundError as exc:
            raise self._error("no such file", position) from exc
        except OSError as exc:
            raise self._error(f"cannot be opened: {exc.strerror or exc}", position) from exc

    def _head_hash(self, fd: int, upto: int, *, fresh: bool = False) -> str:
        """A hash of the file's first ``min(HEAD_BYTES, upto)`` bytes; kept once the file
        is that long, unless ``fresh`` (checking a file that may have changed)."""
        if not self.durable:
            return ""  # a pipe (stdin): nothing to read again
        n = min(HEAD_BYTES, upto)
        if fresh:
            return hashlib.blake2b(os.pread(fd, n, 0), digest_size=8).hexdigest()
        known = self._head_hashes.get(n)
        if known is not None:
            return known
        if len(self._head) < n:
            self._head = os.pread(fd, HEAD_BYTES, 0)
        digest = hashlib.blake2b(self._head[:n], digest_size=8).hexdigest()
        if len(self._head) >= n:
            self._head_hashes[n] = digest
        return digest

    def _check_same(self, fd: int, where: Mapping[str, Any], end: int, what: str) -> None:
        """Raise ``SourceError`` unless ``fd`` is the file ``where`` (a span or position)
        was read from, still holding its first ``end`` bytes."""
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise self._error(f"is not a regular file, so {what} cannot be read again", dict(where))
        if st.st_ino != where.get("ino"):
            raise self._error(
                f"was replaced since {what} was read (inode {st.st_ino}, was "
                f"{where.get('ino')}); the checkpoint belongs to another file",
                dict(where),
            )
        if st.st_size < end:
            raise self._error(
                f"was truncated since {what} was read ({st.st_size} bytes, {what} ends at "
                f"byte {end})",
                dict(where),
            )
        if self._head_hash(fd, end, fresh=True) != where.get("head"):
            raise self._error(
                f"was rewritten since {what} was read (its first bytes differ)", dict(where)
            )

    def open(self, position: Any | None) -> None:
        """Open the file at its first byte, or after ``position``, checking it is the same
        file (inode, size, first bytes) that position was read from."""
        self.close()
        if self._stream is not None:
            if position is not None:
                raise self._error("is a stream: it cannot be read again from a position")
            self._fd = _STREAM
            self._offset, self._line = 0, 1
            self._ahead, self._next, self._tail, self._ended = [], 0, [], False
            return
        fd = self._open_fd(position)
        try:
            st = os.fstat(fd)
            self._ino = st.st_ino
            self.durable = stat.S_ISREG(st.st_mode)
            self._head = b""
            self._head_hashes = {}
            offset, line = 0, 1
            if position is not None:
                offset, line = self._parse_position(position)
                self._check_same(fd, position, offset, "the checkpoint's position")
                os.lseek(fd, offset, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._offset, self._line = offset, line
        self._ahead, self._next, self._tail, self._ended = [], 0, [], False

    def _parse_position(self, position: Any) -> tuple[int, int]:
        if (
            isinstance(position, Mapping)
            and isinstance(position.get("offset"), int)
            and isinstance(position.get("line"), int)
            and position["offset"] >= 0
            and position["line"] >= 1
        ):
            return position["offset"], position["line"]
        raise self._error(f"{position!r} is not a position of a JSON-lines source", position)

    # -- reading ---------------------------------------------------------------------------

    def _fill(self, fd: int) -> bool:
        """Read the next block into the lines ahead; False at the end of the file."""
        try:
            if self._stream is None:
                data = os.read(fd, READ_SIZE)
            else:
                read = getattr(self._stream, "read1", self._stream.read)
                data = read(READ_SIZE)
        except OSError as exc:
            raise self._error(
                f"cannot be read at byte {self._offset}: {exc.strerror or exc}",
                self._here(),
                retryable=True,
            ) from exc
        if not data:
            return False
        if b"\n" not in data:  # still inside a (long) line
            self._tail.append(data)
            return True
        parts = (b"".join(self._tail) + data if self._tail else data).split(b"\n")
        self._tail = [parts.pop()]
        self._ahead = self._ahead[self._next :] + parts if self._next < len(self._ahead) else parts
        self._next = 0
        return True

    def _here(self) -> dict[str, Any]:
        return {"offset": self._offset, "line": self._line}

    def _check_followed(self, fd: int) -> None:
        """While tailing: the file must not shrink below what was read, nor be replaced."""
        read_to = self._offset + sum(map(len, self._tail))  # nothing is ahead at the end
        size = os.fstat(fd).st_size
        if size < read_to:
            raise self._error(
                f"was truncated while followed ({size} bytes, {read_to} already read)",
                self._here(),
            )
        try:
            ino = os.stat(self._path).st_ino
        except FileNotFoundError as exc:
            raise self._error("was removed while followed", self._here()) from exc
        if ino != self._ino:
            raise self._error(
                "was replaced while followed (a new file at its path: rotated?)", self._here()
            )

    def read(self, max_rows: int, timeout: float) -> Chunk | None:
        """Up to ``max_rows`` lines (rows, bad lines and blank lines), waiting up to
        ``timeout`` seconds for the first when following; None at the end of a file not
        followed."""
        fd = self._fd
        if fd is None:
            raise self._error("read before open()")
        if self._ended:
            return None
        raws: list[bytes] = []
        newlines = 0
        deadline: float | None = None
        while len(raws) < max_rows:
            ahead = len(self._ahead) - self._next
            if ahead:
                n = min(max_rows - len(raws), ahead)
                raws.extend(self._ahead[self._next : self._next + n])
                self._next += n
                newlines += n
                continue
            if self._fill(fd):
                continue
            if not self.follow:
                last = b"".join(self._tail)
                if last:  # the last line, without a line break
                    raws.append(last)
                self._tail = []
                self._ended = True
                if not raws:
                    return None
                break
            if raws:
                break
            self._check_followed(fd)
            now = time.monotonic()
            if deadline is None:
                deadline = now + timeout
            if now >= deadline:
                break
            time.sleep(min(self.poll_interval, deadline - now))
        start, line = self._offset, self._line
        end = start + sum(map(len, raws)) + newlines
        rows, numbers, bad = self._decode(raws, line)
        span = {
            "start": start,
            "end": end,
            "line": line,
            "lines": len(raws),
            "ino": self._ino,
            "head": self._head_hash(fd, end),
        }
        self._offset, self._line = end, line + len(raws)
        return Chunk(rows, span, bad, None, _Wheres(self._name, numbers))

    def _decode(self, raws: list[bytes], line: int) -> tuple[list[Any], list[int], list[BadRecord]]:
        """The rows of ``raws`` (lines from number ``line``), their line numbers, and the
        bad records among them."""
        rows: list[Any] = []
        numbers: list[int] = []
        bad: list[BadRecord] = []
        name = self._name
        for number, raw in enumerate(raws, line):
            try:
                row = decode_json_line(raw, first=number == 1)
            except BadLine as exc:
                where = f"{name} line {number}"
                bad.append(BadRecord(where, exc.text, exc.problem, len(rows) + len(bad)))
                continue
            if row is not BLANK:
                rows.append(row)
                numbers.append(number)
        return rows, numbers, bad

    def join(self, chunks: Sequence[Chunk]) -> Chunk:
        """Chunks read in a row as one: their spans are adjacent, so the batch's span is
        one byte range too (empty chunks dropped)."""
        full = [c for c in chunks if c.span["end"] > c.span["start"]] or list(chunks[:1])
        if len(full) == 1:
            return full[0]
        first, last = full[0].span, full[-1].span
        rows: list[Any] = []
        numbers: list[int] = []
        bad: list[BadRecord] = []
        for chunk in full:
            offset = len(rows) + len(bad)
            bad.extend(BadRecord(b.where, b.text, b.reason, b.index + offset) for b in chunk.bad)
            rows.extend(chunk.rows)
            wheres = chunk.wheres
            numbers.extend(wheres._lines if isinstance(wheres, _Wheres) else ())
        span = {
            "start": first["start"],
            "end": last["end"],
            "line": first["line"],
            "lines": sum(c.span["lines"] for c in full),
            "ino": last["ino"],
            "head": last["head"],
        }
        return Chunk(rows, span, bad, None, _Wheres(self._name, numbers))

    def _parse_span(self, span: Any) -> tuple[int, int, int, int]:
        if isinstance(span, Mapping):
            start, end, line, lines = (span.get(k) for k in ("start", "end", "line", "lines"))
            if (
                isinstance(start, int)
                and isinstance(end, int)
                and isinstance(line, int)
                and isinstance(lines, int)
                and 0 <= start <= end
                and line >= 1
                and lines >= 0
            ):
                return start, end, line, lines
        raise self._error(f"{span!r} is not a span of a JSON-lines source")

    def reread(self, span: Any) -> Chunk:
        """Exactly the lines of ``span`` again (a batch replayed after a crash), from the
        same bytes of the same file; ``SourceError`` when the file lost them."""
        if isinstance(span, list):  # the default join's span: several read in a row
            return super().join([self.reread(s) for s in span])
        start, end, line, lines = self._parse_span(span)
        if self._stream is not None:
            raise self._error(
                f"is a stream: lines {line}..{line + lines - 1} cannot be read again", span
            )
        fd = self._open_fd(span)
        try:
            self._check_same(fd, span, end, f"the batch of lines {line}..{line + lines - 1}")
            data = os.pread(fd, end - start, start)
        finally:
            os.close(fd)
        raws = data.split(b"\n") if data else []
        if data.endswith(b"\n"):
            raws.pop()
        if len(data) != end - start or len(raws) != lines:
            raise self._error(
                f"bytes {start}..{end} no longer hold lines {line}..{line + lines - 1}",
                dict(span),
            )
        rows, numbers, bad = self._decode(raws, line)
        return Chunk(rows, dict(span), bad, None, _Wheres(self._name, numbers))

    def position(self, span: Any) -> Any:
        """The offset and line number after ``span``, with the file's identity."""
        if isinstance(span, list):
            span = span[-1]
        _start, end, line, lines = self._parse_span(span)
        return {
            "offset": end,
            "line": line + lines,
            "ino": span["ino"],
            "head": span["head"],
        }

    def close(self) -> None:
        """Close the file (reading again needs ``open``)."""
        fd, self._fd = self._fd, None
        if fd is not None and fd != _STREAM:
            os.close(fd)
