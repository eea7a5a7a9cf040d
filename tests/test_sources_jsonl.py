"""``sources.jsonl``: a JSON-lines file read through the Source interface, by its methods.

Spans are byte ranges with line numbers, ``reread`` gives the same rows again, positions
resume after a span and know when the file is no longer the one they were read from,
``follow=True`` tails a file a writer thread appends to, and bad lines are BadRecords.
"""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from kisflow import sources
from kisflow.errors import SourceError
from kisflow.sources import Chunk, Source
from kisflow.sources._jsonl import BLANK, BadLine, JsonLinesSource, decode_json_line


def _write(path: Path, rows: list[Any]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _drain(src: Source, max_rows: int = 3) -> list[Chunk]:
    chunks = []
    while (chunk := src.read(max_rows, 0.0)) is not None:
        chunks.append(chunk)
    return chunks


@pytest.fixture
def orders(tmp_path: Path) -> Path:
    path = tmp_path / "orders.jsonl"
    _write(path, [{"id": i} for i in range(10)])
    return path


class TestReading:
    def test_rows_spans_and_line_numbers(self, orders: Path) -> None:
        src = sources.jsonl(orders)
        src.open(None)
        chunks = _drain(src, 4)
        assert [len(c.rows) for c in chunks] == [4, 4, 2]
        assert [r["id"] for c in chunks for r in c.rows] == list(range(10))
        sizes = [len(json.dumps({"id": i})) + 1 for i in range(10)]
        assert [c.span["start"] for c in chunks] == [0, sum(sizes[:4]), sum(sizes[:8])]
        assert chunks[-1].span["end"] == orders.stat().st_size
        assert [c.span["line"] for c in chunks] == [1, 5, 9]
        assert chunks[1].wheres is not None
        assert list(chunks[1].wheres) == [f"{orders} line {n}" for n in (5, 6, 7, 8)]
        assert chunks[1].wheres[-1] == f"{orders} line 8"
        assert src.read(4, 0.0) is None  # the end stays the end

    def test_key_is_the_absolute_path_and_messages_use_the_given_name(
        self, orders: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(orders.parent)
        src = sources.jsonl("orders.jsonl")
        assert src.key == f"jsonl:{orders}"
        assert src.describe() == "orders.jsonl"
        src.open(None)
        chunk = src.read(1, 0.0)
        assert chunk is not None
        assert chunk.wheres is not None
        assert list(chunk.wheres) == ["orders.jsonl line 1"]

    def test_blank_lines_a_bom_and_a_last_line_without_a_break(self, tmp_path: Path) -> None:
        path = tmp_path / "odd.jsonl"
        path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n\n   \n{"a": 2}\n{"a": 3}')
        src = JsonLinesSource(path)
        src.open(None)
        chunk = src.join(_drain(src, 2))
        assert chunk.rows == [{"a": 1}, {"a": 2}, {"a": 3}]
        assert chunk.wheres is not None
        assert [w.rsplit(" ", 1)[1] for w in chunk.wheres] == ["1", "4", "5"]
        assert chunk.span["end"] == path.stat().st_size
        assert chunk.span["lines"] == 5
        assert src.position(chunk.span)["line"] == 6

    def test_bad_lines_are_bad_records_with_their_text(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.jsonl"
        path.write_bytes(
            b'{"ok": 1}\n{oops\n"\xff"\n' + b"[" * 10_000 + b"\n" + b"9" * 5_000 + b'\n{"ok": 2}\n'
        )
        src = sources.jsonl(path)
        src.open(None)
        chunk = src.read(100, 0.0)
        assert chunk is not None
        assert chunk.rows == [{"ok": 1}, {"ok": 2}]
        assert chunk.size == 6
        assert [(b.where, b.index) for b in chunk.bad] == [
            (f"{path} line 2", 1),
            (f"{path} line 3", 2),
            (f"{path} line 4", 3),
            (f"{path} line 5", 4),
        ]
        assert [b.reason for b in chunk.bad] == [
            "is not JSON: Expecting property name enclosed in double quotes at column 2",
            "is not UTF-8 (byte 2: invalid start byte)",
            "is nested too deeply to read as JSON",
            "cannot be read as JSON: Exceeds the limit (4300 digits) for integer string "
            "conversion: value has 5000 digits; use sys.set_int_max_str_digits() to "
            "increase the limit",
        ]
        assert [b.text for b in chunk.bad[:2]] == ["{oops", '"\\xff"']
        assert chunk.bad[2].text == "[" * 10_000
        assert chunk.wheres is not None
        assert list(chunk.wheres) == [f"{path} line 1", f"{path} line 6"]

    def test_read_before_open_and_a_missing_file(self, tmp_path: Path) -> None:
        src = sources.jsonl(tmp_path / "none.jsonl")
        with pytest.raises(SourceError, match="read before open"):
            src.read(1, 0.0)
        with pytest.raises(SourceError, match=r"none\.jsonl: no such file") as info:
            src.open(None)
        assert info.value.source == f"jsonl:{tmp_path / 'none.jsonl'}"


class TestDecodeLine:
    """The one decoder of a JSON line (the CLI's plain stream uses it too)."""

    def test_rows_blanks_and_problems(self) -> None:
        assert decode_json_line(b' {"a": [1, 2]} \r') == {"a": [1, 2]}
        assert decode_json_line("\ufeff3", first=True) == 3
        assert decode_json_line(b"  \t") is BLANK
        with pytest.raises(BadLine) as info:
            decode_json_line("\ufeff3")
        assert info.value.problem.startswith("is not JSON")
        with pytest.raises(BadLine) as bad:
            decode_json_line(b"ab\xfe\r\n")
        assert bad.value.text == "ab\\xfe"
        assert isinstance(bad.value.__cause__, UnicodeDecodeError)


class TestReread:
    def test_a_joined_batch_rereads_the_same_rows(self, orders: Path) -> None:
        src = sources.jsonl(orders)
        src.open(None)
        first = src.read(3, 0.0)
        batch = src.join([src.read(2, 0.0), src.read(3, 0.0)])  # type: ignore[list-item]
        assert first is not None
        assert [r["id"] for r in batch.rows] == [3, 4, 5, 6, 7]
        assert batch.span["start"] == first.span["end"]
        assert batch.span["line"] == 4
        again = JsonLinesSource(orders).reread(batch.span)  # a fresh process after a crash
        assert again.rows == batch.rows
        assert again.wheres == batch.wheres
        assert again.span == batch.span
        assert src.reread(first.span).rows == [{"id": 0}, {"id": 1}, {"id": 2}]

    def test_the_default_joins_list_of_spans_rereads_too(self, orders: Path) -> None:
        src = sources.jsonl(orders)
        src.open(None)
        a, b = src.read(2, 0.0), src.read(2, 0.0)
        assert a is not None
        assert b is not None
        assert src.reread([a.span, b.span]).rows == a.rows + b.rows
        assert src.position([a.span, b.span]) == src.position(b.span)

    def test_truncated_file(self, orders: Path) -> None:
        src = sources.jsonl(orders)
        src.open(None)
        src.read(3, 0.0)
        late = src.read(3, 0.0)
        assert late is not None
        with orders.open("r+b") as f:
            f.truncate(late.span["start"] + 2)
        with pytest.raises(
            SourceError, match=r"was truncated since the batch of lines 4\.\.6"
        ) as e:
            src.reread(late.span)
        assert str(orders) in str(e.value)
        assert e.value.position == late.span

    def test_replaced_file(self, orders: Path) -> None:
        src = sources.jsonl(orders)
        src.open(None)
        chunk = src.read(3, 0.0)
        assert chunk is not None
        replacement = orders.with_name("new.jsonl")
        replacement.write_bytes(orders.read_bytes())
        os.replace(replacement, orders)
        with pytest.raises(SourceError, match=r"orders\.jsonl: was replaced since"):
            src.reread(chunk.span)

    def test_rewritten_in_place(self, orders: Path) -> None:
        src = sources.jsonl(orders)
        src.open(None)
        chunk = src.read(3, 0.0)
        assert chunk is not None
        data = bytearray(orders.read_bytes())
        data[7] = ord("7")  # {"id": 0} -> {"id": 7}, same size, same inode
        with orders.open("r+b") as f:
            f.write(bytes(data))
        with pytest.raises(SourceError, match="was rewritten since"):
            src.reread(chunk.span)

    def test_not_a_span(self, orders: Path) -> None:
        with pytest.raises(SourceError, match="is not a span of a JSON-lines source"):
            sources.jsonl(orders).reread({"offset": 3})


class TestPositions:
    def test_open_at_a_position_goes_on_after_it(self, orders: Path) -> None:
        src = sources.jsonl(orders)
        src.open(None)
        chunk = src.read(4, 0.0)
        assert chunk is not None
        position = src.position(chunk.span)
        src.close()
        assert position["offset"] == chunk.span["end"]
        assert position["line"] == 5
        json.dumps(position)  # positions go to the checkpoint as JSON
        again = sources.jsonl(orders)
        again.open(json.loads(json.dumps(position)))
        rest = again.join(_drain(again))
        assert [r["id"] for r in rest.rows] == [4, 5, 6, 7, 8, 9]
        assert rest.wheres is not None
        assert rest.wheres[0] == f"{orders} line 5"

    def test_position_after_appends_to_the_file(self, orders: Path) -> None:
        src = sources.jsonl(orders)
        src.open(None)
        batch = src.join(_drain(src))
        position = src.position(batch.span)
        with orders.open("a") as f:
            f.write('{"id": 10}\n')
        again = sources.jsonl(orders)
        again.open(position)
        assert [c.rows for c in _drain(again)] == [[{"id": 10}]]

    @pytest.mark.parametrize("damage", ["truncate", "replace", "rewrite"])
    def test_a_position_in_another_file_is_refused(self, orders: Path, damage: str) -> None:
        src = sources.jsonl(orders)
        src.open(None)
        position = src.position(src.read(6, 0.0).span)  # type: ignore[union-attr]
        src.close()
        data = orders.read_bytes()
        if damage == "truncate":
            orders.write_bytes(data[:10])
        elif damage == "replace":  # a copy made while the old file exists: a new inode
            orders.with_name("copy").write_bytes(data)
            os.replace(orders.with_name("copy"), orders)
        else:
            orders.write_bytes(data.replace(b'"id": 0', b'"id": 5'))
        with pytest.raises(SourceError) as info:
            sources.jsonl(orders).open(position)
        assert str(info.value).startswith(f"{orders}: was ")
        assert "the checkpoint's position" in str(info.value)
        assert info.value.position == position

    def test_not_a_position(self, orders: Path) -> None:
        with pytest.raises(SourceError, match="is not a position of a JSON-lines source"):
            sources.jsonl(orders).open({"offset": -1, "line": 1})


class TestFollow:
    def test_nothing_new_is_an_empty_chunk(self, orders: Path) -> None:
        src = sources.jsonl(orders, follow=True, poll_interval=0.01)
        src.open(None)
        chunk = src.read(100, 1.0)
        assert chunk is not None
        assert len(chunk.rows) == 10
        empty = src.read(100, 0.05)
        assert empty is not None
        assert empty.rows == []
        assert empty.size == 0
        assert empty.span["start"] == empty.span["end"] == chunk.span["end"]
        assert src.join([chunk, empty]) is chunk

    def test_a_half_written_line_waits_for_its_line_break(self, orders: Path) -> None:
        src = sources.jsonl(orders, follow=True, poll_interval=0.01)
        src.open(None)
        src.read(100, 0.0)
        with orders.open("a") as f:
            f.write('{"id": 1')
            f.flush()
            empty = src.read(100, 0.1)
            assert empty is not None
            assert empty.size == 0
            f.write('0}\n{"id": 11}\n')
        chunk = src.read(100, 10.0)
        assert chunk is not None
        assert chunk.rows == [{"id": 10}, {"id": 11}]
        assert chunk.wheres is not None
        assert next(iter(chunk.wheres)) == f"{orders} line 11"
        assert src.reread(chunk.span).rows == chunk.rows

    def test_a_writer_thread_appending(self, tmp_path: Path) -> None:
        path = tmp_path / "growing.jsonl"
        path.write_bytes(b"")
        total = 3000

        def writer() -> None:
            with path.open("a") as f:
                for i in range(total):
                    line = json.dumps({"n": i}) + "\n"
                    f.write(line[:3])  # a line written in two pieces
                    f.flush()
                    f.write(line[3:])
                    if i % 100 == 0:
                        f.flush()

        src = sources.jsonl(path, follow=True, poll_interval=0.005)
        src.open(None)
        thread = threading.Thread(target=writer)
        thread.start()
        got: list[Chunk] = []
        while sum(len(c.rows) for c in got) < total:
            chunk = src.read(250, 10.0)
            assert chunk is not None, "a followed file never ends"
            assert not chunk.bad, chunk.bad[:1]
            got.append(chunk)
        thread.join()
        assert [r["n"] for c in got for r in c.rows] == list(range(total))
        batch = src.join(got)
        assert batch.span["end"] == path.stat().st_size
        assert batch.span["lines"] == total
        assert sources.jsonl(path).reread(batch.span).rows == batch.rows

    def test_truncated_while_followed(self, orders: Path) -> None:
        src = sources.jsonl(orders, follow=True, poll_interval=0.01)
        src.open(None)
        src.read(100, 0.0)
        orders.write_bytes(b"")  # truncated in place (same inode)
        with pytest.raises(SourceError, match=r"orders\.jsonl: was truncated while followed"):
            src.read(100, 1.0)

    def test_replaced_while_followed(self, orders: Path) -> None:
        src = sources.jsonl(orders, follow=True, poll_interval=0.01)
        src.open(None)
        src.read(100, 0.0)
        orders.rename(orders.with_name("orders.1.jsonl"))
        orders.write_text('{"id": 0}\n')
        with pytest.raises(SourceError, match="was replaced while followed"):
            src.read(100, 1.0)


class TestStream:
    """A given binary stream (the CLI's stdin) is read the same way, but not durably."""

    def test_rows_and_no_replay(self) -> None:
        src = JsonLinesSource("<stdin>", name="stdin", stream=io.BytesIO(b"1\n{x\n[2]"))
        assert src.durable is False
        src.open(None)
        chunk = src.read(10, 0.0)
        assert chunk is not None
        assert chunk.rows == [1, [2]]
        assert [(b.where, b.text) for b in chunk.bad] == [("stdin line 2", "{x")]
        assert src.read(10, 0.0) is None
        with pytest.raises(SourceError, match=r"stdin: is a stream: lines 1\.\.3 cannot be read"):
            src.reread(chunk.span)
        with pytest.raises(SourceError, match="cannot be read again from a position"):
            src.open(src.position(chunk.span))
        with pytest.raises(ValueError, match="cannot be followed"):
            JsonLinesSource("<stdin>", stream=io.BytesIO(), follow=True)


def test_lines_longer_than_a_read(tmp_path: Path) -> None:
    """A line spanning several reads is one row, and its span's offsets stay exact."""
    from kisflow.sources._jsonl import READ_SIZE

    path = tmp_path / "long.jsonl"
    big = "x" * (READ_SIZE * 3 + 5)
    path.write_text(json.dumps({"big": big}) + "\n" + json.dumps([1]) + "\n{" + big)
    src = sources.jsonl(path)
    src.open(None)
    first = src.read(1, 0.0)
    assert first is not None
    assert first.rows == [{"big": big}]
    rest = src.join(_drain(src))
    assert rest.rows == [[1]]
    assert [(b.where, len(b.text)) for b in rest.bad] == [(f"{path} line 3", len(big) + 1)]
    assert rest.span["end"] == path.stat().st_size
    assert sources.jsonl(path).reread(first.span).rows == first.rows


def test_the_factory_stays_a_function(orders: Path) -> None:
    """Importing the source's module does not replace ``sources.jsonl`` (a submodule of
    the same name would: the import system sets it on the package)."""
    import kisflow.sources._jsonl  # noqa: F401

    assert callable(sources.jsonl)
    assert isinstance(sources.jsonl(orders), JsonLinesSource)
    assert isinstance(sources.jsonl(orders), JsonLinesSource)
