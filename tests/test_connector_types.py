"""A connector type written outside kisflow: registered with one call, named by ``type:``.

``MemoryStore`` keeps rows in a dict of lists keyed by ``conn.key`` and honours the
``SaveMark`` a Save gets inside a partition. It is registered with
``kisflow.pool.connector_type`` (or found through the ``kisflow.connectors`` entry-point
group), named by a YAML conn file, validated by the CLI and runs Save and Load flows.
"""

from __future__ import annotations

import contextvars
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest
from click.testing import CliRunner, Result

import kisflow as kf
import kisflow.connector
from kisflow import _context, _state
from kisflow._pool import Pool
from kisflow.cli import main
from kisflow.connector import find_type
from kisflow.connectors import SaveMark, Store, to_record
from kisflow.testing import isolated_pool


class MemoryStore(Store):
    """Rows in a dict of lists keyed by ``conn.key``; each list's marks in a set beside it."""

    type_name = "memory"
    tables: ClassVar[dict[str, list[dict[str, Any]]]] = {}
    marks: ClassVar[dict[str, set[SaveMark]]] = {}
    saves: ClassVar[list[SaveMark | None]] = []
    """The mark of every save call, in order (what the engine handed the store)."""
    made: ClassVar[int] = 0
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def check(self) -> None:
        if not self.config.key:
            raise self.error("has no key; set it to the list the rows go in")
        with self._lock:
            MemoryStore.made += 1

    def save(
        self, rows: Sequence[Any], params: Mapping[str, Any], mark: SaveMark | None = None
    ) -> int:
        if self.config.addrs == "down":
            down = OSError("the memory is down")
            raise self.unreachable(down) from down
        records = [to_record(row, i, self) for i, row in enumerate(rows)]
        with self._lock:
            self.saves.append(mark)
            if mark is not None:
                done = self.marks.setdefault(self.config.key, set())
                if mark in done:
                    return 0
                done.add(mark)
            self.tables.setdefault(self.config.key, []).extend(records)
        return len(records)

    def load(self, params: Mapping[str, Any]) -> list[Any]:
        where, limit = self.where_limit(params)
        with self._lock:
            rows = [r for r in self.tables.get(self.config.key, []) if where.items() <= r.items()]
        return rows if limit is None else rows[:limit]


INITS: list[str] = []
"""Connector names the ``caas_init`` below ran for."""


def count_init(conn: kf.Connector) -> None:
    INITS.append(conn.get_name())


@pytest.fixture(autouse=True)
def _fresh_memory() -> None:
    """Every test starts with empty tables and counters."""
    MemoryStore.tables.clear()
    MemoryStore.marks.clear()
    MemoryStore.saves.clear()
    MemoryStore.made = 0
    INITS.clear()


ROWS = [{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}, {"id": 3, "name": "cy"}]


def write_folder(root: Path, conn_type: str = "memory", addrs: str = "") -> Path:
    """A KisFlow config folder: a Save flow and a Load flow on connector ``mem``."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "flow-SaveRows.yml": "kistype: flow\nstatus: 1\nflow_name: SaveRows\n"
        "flows:\n  - fname: StoreRows\n",
        "flow-LoadRows.yml": "kistype: flow\nstatus: 1\nflow_name: LoadRows\n"
        "flows:\n  - fname: ReadRows\n",
        "func-StoreRows.yml": "kistype: func\nfname: StoreRows\nfmode: Save\n"
        "source:\n  name: People\noption:\n  cname: mem\n",
        "func-ReadRows.yml": "kistype: func\nfname: ReadRows\nfmode: Load\n"
        "source:\n  name: People\noption:\n  cname: mem\n",
        "conn-mem.yml": f"kistype: conn\ncname: mem\naddrs: {addrs!r}\ntype: {conn_type}\n"
        "key: people\nparams: {}\n",
    }
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def faas_file(folder: Path, *, with_init: bool = False) -> Path:
    """A ``--faas`` file registering ``MemoryStore`` as type ``memory`` (one call)."""
    lines = [
        "import kisflow",
        f"from {__name__} import MemoryStore, count_init",
        'kisflow.pool.connector_type("memory", MemoryStore)',
    ]
    if with_init:
        lines.append('kisflow.caas_init("mem", count_init)')
    path = folder / ("register_memory_init.py" if with_init else "register_memory.py")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cli(*args: str | Path) -> Result:
    """Invoke the CLI in-process, in a pool of its own (a --faas file registers there)."""
    with isolated_pool():
        return CliRunner().invoke(main, [str(a) for a in args])


@attrs.frozen
class _Part:
    """A partition as an executor publishes it: something with a stable ``key``."""

    key: str


def in_partition(key: str) -> contextvars.Context:
    """A context in which the engine says partition ``key`` is running (a fresh run of it)."""
    ctx = contextvars.copy_context()
    ctx.run(_context.PARTITION.set, _Part(key))
    return ctx


class TestRegistration:
    """One public call registers the type in the pool; the registry then finds it."""

    def test_one_call_registers_it_in_this_pool_only(self, pool: Pool) -> None:
        assert kf.pool.connector_type("memory", MemoryStore) is MemoryStore
        found = kf.pool.get_connector_type("MEMORY")
        assert found is not None
        assert (found.name, found.factory, found.file_path) == ("memory", MemoryStore, False)
        assert find_type("memory", pool) is found
        with isolated_pool() as other:
            assert find_type("memory", other) is None

    def test_a_second_registration_needs_replace(self) -> None:
        kf.pool.connector_type("memory", MemoryStore)
        with pytest.raises(kf.DuplicateRegistrationError, match="memory"):
            kf.pool.connector_type("memory", MemoryStore)
        kf.pool.connector_type("memory", MemoryStore, replace=True)
        assert kf.pool.get_connector_type("memory") is not None

    def test_a_pool_type_wins_over_a_builtin_of_that_name(self) -> None:
        assert kf.connectors.is_builtin_type("jsonl")
        kf.pool.connector_type("jsonl", MemoryStore)
        found = kf.pool.get_connector_type("jsonl")
        assert found is not None
        assert found.factory is MemoryStore
        conn = kf.ConnConfig(cname="mem", type="jsonl", key="people")
        flow = kf.FlowBuilder("shadow").save("StoreRows", conn=conn).build()
        assert flow.run(ROWS[:1]).output == ROWS[:1]
        assert MemoryStore.tables == {"people": ROWS[:1]}


class TestConfigFolder:
    """A YAML folder names the type; loading, the CLI and runs all use the registry."""

    def test_loads_runs_save_then_load(self, tmp_path: Path) -> None:
        kf.pool.connector_type("memory", MemoryStore)
        loaded = kf.load_config_dir(write_folder(tmp_path / "conf"))
        assert sorted(loaded.flows) == ["LoadRows", "SaveRows"]
        assert loaded.conns["mem"].type == "memory"
        assert loaded.conns["mem"].save == ("StoreRows",)
        assert loaded.conns["mem"].load == ("ReadRows",)
        assert MemoryStore.made == 0  # loading made no store
        saved = loaded.flows["SaveRows"].run(ROWS)
        assert saved.output == ROWS  # a Save passes its rows on
        assert MemoryStore.tables == {"people": ROWS}
        assert MemoryStore.saves == [None]  # no partition: no mark
        loaded_rows = loaded.flows["LoadRows"].run([]).output
        assert loaded_rows == ROWS
        assert MemoryStore.made == 2  # one store per flow's connector

    def test_an_unregistered_type_needs_a_faas(self, tmp_path: Path) -> None:
        with pytest.raises(kf.ConfigError) as info:
            kf.load_config_dir(write_folder(tmp_path / "conf"))
        found = sorted((Path(e.path or "").name, e.key) for e in info.value.errors)
        assert found == [
            ("flow-LoadRows.yml", "flows[0].fname"),
            ("flow-SaveRows.yml", "flows[0].fname"),
        ]
        assert "function 'StoreRows'" in str(info.value)
        assert "has no FaaS registered" in str(info.value)

    def test_a_file_path_type_resolves_addrs_from_the_conn_file(self, tmp_path: Path) -> None:
        kf.pool.connector_type("memfile", MemoryStore, file_path=True)
        kf.pool.connector_type("memory", MemoryStore)
        conf = write_folder(tmp_path / "conf", conn_type="memfile", addrs="data/people.mem")
        assert kf.load_config_dir(conf).conns["mem"].addrs == str(conf / "data" / "people.mem")
        other = write_folder(tmp_path / "other", conn_type="memory", addrs="data/people.mem")
        with isolated_pool():
            kf.pool.connector_type("memory", MemoryStore)
            assert kf.load_config_dir(other).conns["mem"].addrs == "data/people.mem"

    def test_cli_validate_with_a_faas_file_registering_the_type(self, tmp_path: Path) -> None:
        conf = write_folder(tmp_path / "conf")
        result = cli("validate", conf, "--faas", faas_file(tmp_path))
        assert result.exit_code == 0, result.output
        # Files are read in name order: flow-LoadRows.yml comes first.
        assert result.stdout.splitlines() == [
            "flow LoadRows: ReadRows[L]",
            "flow SaveRows: StoreRows[S]",
        ]
        assert f"ok: 2 flows in {conf}" in result.stderr
        assert MemoryStore.made == 0

    def test_cli_validate_without_the_type_reports_both_stages(self, tmp_path: Path) -> None:
        conf = write_folder(tmp_path / "conf")
        result = cli("validate", conf)
        assert result.exit_code == 1
        assert result.stderr.count("has no FaaS registered") == 2
        for flow, func in (("SaveRows", "StoreRows"), ("LoadRows", "ReadRows")):
            where = f"{conf / f'flow-{flow}.yml'}: flows[0].fname"
            assert f"{where}: flow {flow!r} function {func!r}" in result.stderr
        assert "2 problems in" in result.stderr

    def test_cli_run_saves_then_loads(self, tmp_path: Path) -> None:
        conf, faas = write_folder(tmp_path / "conf"), faas_file(tmp_path)
        source = tmp_path / "rows.jsonl"
        source.write_text('{"id": 1, "name": "ann"}\n{"id": 2, "name": "bob"}\n')
        saved = cli("run", conf, "--flow", "SaveRows", "--faas", faas, "--input", source)
        assert saved.exit_code == 0, saved.output
        assert MemoryStore.tables == {"people": ROWS[:2]}
        read = cli("run", conf, "--flow", "LoadRows", "--faas", faas)
        assert read.exit_code == 0, read.output
        assert read.stdout.splitlines() == ['{"id": 1, "name": "ann"}', '{"id": 2, "name": "bob"}']


class TestNoConnectorInitOutsideRuns:
    """validate, graph and export run no ``caas_init``; a run runs it once."""

    def test_validate_graph_export_init_nothing(self, tmp_path: Path) -> None:
        conf, faas = write_folder(tmp_path / "conf"), faas_file(tmp_path, with_init=True)
        validated = cli("validate", conf, "--faas", faas)
        assert validated.exit_code == 0, validated.output
        graphed = cli("graph", conf, "--flow", "SaveRows", "--faas", faas)
        assert graphed.exit_code == 0, graphed.output
        assert '"StoreRows"' in graphed.stdout
        exported = cli("export", conf, "--flow", "SaveRows", "--faas", faas, "-o", tmp_path / "out")
        assert exported.exit_code == 0, exported.output
        assert (tmp_path / "out" / "conn-mem.yaml").read_text().count("type: memory") == 1
        assert INITS == []
        assert MemoryStore.made == 0

    def test_a_run_inits_once(self, tmp_path: Path) -> None:
        kf.pool.connector_type("memory", MemoryStore)
        kf.caas_init("mem", count_init)
        loaded = kf.load_config_dir(write_folder(tmp_path / "conf"))
        loaded.flows["SaveRows"].validate()
        assert INITS == []
        flow = loaded.flows["SaveRows"]
        flow.run(ROWS[:1])
        flow.run(ROWS[1:])
        assert INITS == ["mem"]
        # The init replaces the store's own init, not its call: the store still saves.
        assert MemoryStore.tables == {"people": ROWS}


class TestSaveMarks:
    """Inside a partition the Save gets a ``SaveMark`` from the engine's context."""

    def flow(self) -> kf.Flow:
        kf.pool.connector_type("memory", MemoryStore)
        conn = kf.ConnConfig(cname="mem", type="memory", key="people")
        return kf.FlowBuilder("marked").save("StoreRows", conn=conn).build()

    def test_the_same_partition_twice_is_stored_once(self) -> None:
        flow = self.flow()
        first = in_partition("p1").run(flow.run, ROWS)
        again = in_partition("p1").run(flow.run, ROWS)  # a replay of partition p1
        assert first.output == again.output == ROWS
        assert MemoryStore.tables == {"people": ROWS}
        mark = SaveMark(flow="marked", stage="StoreRows", partition="p1")
        assert MemoryStore.saves == [mark, mark]
        assert MemoryStore.marks == {"people": {mark}}

    def test_another_partition_is_stored_too(self) -> None:
        flow = self.flow()
        in_partition("p1").run(flow.run, ROWS[:1])
        in_partition("p2").run(flow.run, ROWS[1:])
        in_partition("p1").run(flow.run, ROWS[:1])
        assert MemoryStore.tables == {"people": ROWS}
        assert [m.partition for m in MemoryStore.saves if m is not None] == ["p1", "p2", "p1"]

    def test_chunks_of_one_stage_get_numbered_marks(self) -> None:
        kf.pool.connector_type("memory", MemoryStore)
        conn = kf.ConnConfig(cname="mem", type="memory", key="people")

        @kf.faas("InChunks")
        def in_chunks(flow: kf.Flow, rows: list[dict[str, Any]]) -> None:
            for row in rows:
                flow.get_connector().call(flow, [row])

        flow = kf.FlowBuilder("chunks").save("InChunks", conn=conn).build()
        in_partition("p").run(flow.run, ROWS)
        in_partition("p").run(flow.run, ROWS)
        assert [m.partition for m in MemoryStore.saves if m is not None] == ["p", "p#2", "p#3"] * 2
        assert MemoryStore.tables == {"people": ROWS}

    def test_outside_a_partition_there_is_no_mark(self) -> None:
        flow = self.flow()
        flow.run(ROWS[:1])
        flow.run(ROWS[:1])
        assert MemoryStore.saves == [None, None]
        assert MemoryStore.tables == {"people": ROWS[:1] * 2}


class TestStoreErrors:
    """A store signals an unreachable backend with ``unreachable``: a retried ConnectorError."""

    def test_unreachable_is_retried_then_raised(self) -> None:
        kf.pool.connector_type("memory", MemoryStore)
        conn = kf.ConnConfig(cname="mem", type="memory", addrs="down", key="people")
        option = kf.FuncOption(retry_times=2, return_duration=1)
        flow = kf.FlowBuilder("down").save("StoreRows", conn=conn, option=option).build()
        with pytest.raises(kf.ConnectorError, match="cannot reach its store") as info:
            flow.run(ROWS)
        err = info.value
        assert (err.connector, err.type, err.address) == ("mem", "memory", "down")
        assert (err.flow, err.stage, err.attempts, err.retryable) == ("down", "StoreRows", 3, True)
        assert isinstance(err.__cause__, kf.ConnectorError)
        assert isinstance(err.__cause__.__cause__, OSError)
        assert MemoryStore.tables == {}

    def test_a_bad_config_is_a_connector_error_at_the_first_run(self) -> None:
        kf.pool.connector_type("memory", MemoryStore)
        conn = kf.ConnConfig(cname="mem", type="memory")
        flow = kf.FlowBuilder("nokey").save("StoreRows", conn=conn).build()
        assert MemoryStore.made == 0
        with pytest.raises(kf.ConnectorError, match="has no key") as info:
            flow.run(ROWS)
        assert info.value.retryable is False
        assert info.value.__class__ is kf.ConnectorError

    def test_a_factory_that_raises_is_a_connector_error(self) -> None:
        def broken(config: kf.ConnConfig) -> Store:
            raise ValueError(f"cannot serve {config.key!r}")

        kf.pool.connector_type("broken", broken)
        conn = kf.ConnConfig(cname="b", type="broken", addrs="x", key="people")
        flow = kf.FlowBuilder("broken").save("StoreRows", conn=conn).build()
        with pytest.raises(kf.ConnectorError, match="failed to make its store") as info:
            flow.run(ROWS)
        assert (info.value.connector, info.value.type, info.value.retryable) == (
            "b",
            "broken",
            False,
        )
        assert isinstance(info.value.__cause__, ValueError)
        assert str(info.value.__cause__) == "cannot serve 'people'"


ENTRY_MODULE = """\
from kisflow.connector import ConnectorType
from {test_module} import MemoryStore


class MemTwoStore(MemoryStore):
    type_name = "memtwo"


FILE_TYPE = ConnectorType("memfile", MemoryStore, file_path=True)
"""


@pytest.fixture
def installed_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fake installed distribution declaring two ``kisflow.connectors`` entry points."""
    site = tmp_path / "site"
    dist = site / "kisflow_memtwo-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: kisflow-memtwo\nVersion: 1.0\n", encoding="utf-8"
    )
    (dist / "entry_points.txt").write_text(
        "[kisflow.connectors]\n"
        "memtwo = kisflow_memtwo:MemTwoStore\n"
        "memfile = kisflow_memtwo:FILE_TYPE\n",
        encoding="utf-8",
    )
    (site / "kisflow_memtwo.py").write_text(
        ENTRY_MODULE.format(test_module=__name__), encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(kisflow.connector, "_entry_points_loaded", False)
    # Entry points register process-wide defaults: put the table back afterwards.
    monkeypatch.setattr(_state, "connector_types", _state.connector_types)
    yield site
    sys.modules.pop("kisflow_memtwo", None)


class TestEntryPoints:
    """An installed package adds connector types through the ``kisflow.connectors`` group."""

    def test_find_type_loads_the_entry_points(self, installed_package: Path) -> None:
        assert "memtwo" not in _state.connector_types
        found = find_type("memtwo")
        assert found is not None
        assert found.name == "memtwo"
        assert found.factory.__name__ == "MemTwoStore"
        assert found.file_path is False
        as_object = find_type("memfile")
        assert as_object is not None
        assert (as_object.factory, as_object.file_path) == (MemoryStore, True)
        assert kisflow.connector._entry_points_loaded is True
        assert find_type("sqlite") is not None  # the built-ins are still there

    def test_a_flow_on_the_entry_point_type_saves(self, installed_package: Path) -> None:
        conn = kf.ConnConfig(cname="two", type="memtwo", key="people")
        flow = kf.FlowBuilder("two").save("StoreRows", conn=conn).build()
        assert flow.run(ROWS).output == ROWS
        assert MemoryStore.tables == {"people": ROWS}
        assert MemoryStore.made == 1

    def test_a_yaml_folder_names_the_entry_point_type(
        self, installed_package: Path, tmp_path: Path
    ) -> None:
        loaded = kf.load_config_dir(write_folder(tmp_path / "conf", conn_type="memtwo"))
        loaded.flows["SaveRows"].run(ROWS[:2])
        assert loaded.flows["LoadRows"].run([]).output == ROWS[:2]
        assert MemoryStore.tables == {"people": ROWS[:2]}
