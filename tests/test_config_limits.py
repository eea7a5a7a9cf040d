"""Big and hostile configs: linear linking and loading, YAML limits, keys given twice."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import networkx as nx
import pytest
import yaml

import kisflow as kf
from kisflow import _yaml
from kisflow._pool import Pool
from kisflow.config import yaml_fields


def cpu_seconds(fn: object) -> float:
    """The CPU time ``fn()`` takes (other processes on the machine do not count)."""
    start = time.process_time()
    fn()  # type: ignore[operator]
    return time.process_time() - start


class TestLinearLinking:
    """Linking n stages costs O(n) in all: no graph copy and re-sort per link."""

    def test_flow_builder_with_3000_stages_is_fast(self, pool: Pool) -> None:
        for i in range(10):
            kf.faas(f"f{i}", lambda flow: None)
        builder = kf.FlowBuilder("big")
        for i in range(3000):
            builder.calculate(f"f{i % 10}", {"i": i})
        flows: list[kf.Flow] = []
        # Quadratic linking took about 40 s here (1,000 stages: 5 s).
        assert cpu_seconds(lambda: flows.append(builder.build())) < 1.0
        flow = flows[0]
        assert len(flow.stages) == 3000
        assert [s.flow_params["i"] for s in flow.stages] == list(range(3000))
        assert [e.params["i"] for e in flow.config.flows] == list(range(3000))

    def test_the_chain_index_and_graph_follow_every_link(self, pool: Pool) -> None:
        kf.faas("a", lambda flow: flow.commit_row_batch(flow.input()))
        kf.faas("b", lambda flow: flow.commit_row_batch([r + 1 for r in flow.input()]))
        a = kf.FuncConfig(fname="a", fmode=kf.Mode.CALCULATE)
        b = kf.FuncConfig(fname="b", fmode=kf.Mode.CALCULATE)
        flow = kf.Flow("F").link(a).append_function(b)
        assert flow.run([1]).output == [2]
        handle = flow._d.functions[0]
        handle.set_metadata("runs", 3)
        graph_before = flow.graph
        flow.link(b, {"p": 1})
        assert flow.run([1]).output == [3]  # the plan was dropped and made again
        assert flow._d.functions[0] is handle  # metadata survives a link after it
        assert handle.get_metadata("runs") == 3
        assert [s.name for s in flow.stages] == ["a", "b", "b"]
        assert list(nx.topological_sort(flow.graph)) == list(flow.stages)
        s = flow.stages
        assert list(flow.graph.edges) == [(s[0], s[1]), (s[1], s[2])]
        assert len(graph_before) == 2  # a graph read before is not changed (copy on write)
        assert nx.is_frozen(flow.graph)
        assert [e.fname for e in flow.config.flows] == ["a", "b"]  # append_function records none
        assert flow._d.jump_index["b"] == (1, 2)
        assert flow.stages[2].name == "b"

    def test_a_second_config_under_a_name_is_refused_after_many_links(self, pool: Pool) -> None:
        a = kf.FuncConfig(fname="a", fmode=kf.Mode.CALCULATE)
        flow = kf.Flow("F")
        for _ in range(500):
            flow.link(a)
        with pytest.raises(kf.FlowDefinitionError, match="already has function 'a'"):
            flow.link(kf.FuncConfig(fname="a", fmode=kf.Mode.VERIFY))
        assert len(flow.stages) == 500

    def test_from_graph_then_link_keeps_the_graph_and_checks_every_config(self, pool: Pool) -> None:
        a = kf.FuncConfig(fname="a", fmode=kf.Mode.CALCULATE)
        a2 = kf.FuncConfig(fname="a", fmode=kf.Mode.VERIFY)
        s1 = kf.Stage(id="func-1", config=a, flow_params={})
        s2 = kf.Stage(id="func-2", config=a2, flow_params={})
        graph = nx.DiGraph()
        graph.add_edge(s1, s2, label="kept")
        flow = kf.Flow.from_graph("G", graph)
        with pytest.raises(kf.FlowDefinitionError, match="already has function 'a'"):
            flow.link(a)  # a2 differs, as the old per-stage check found
        b = kf.FuncConfig(fname="b", fmode=kf.Mode.CALCULATE)
        flow.link(b)
        assert flow.graph.edges[s1, s2] == {"label": "kept"}
        assert [s.name for s in nx.topological_sort(flow.graph)] == ["a", "a", "b"]


class TestBigConfigs:
    """Big config folders load in linear time (figures measured in CPU seconds)."""

    def test_a_10000_stage_flow_loads_and_builds_in_under_2_s(self, tmp_path: Path) -> None:
        for i in range(10):
            kf.faas(f"f{i}", lambda flow: None)
            write(tmp_path, f"func-f{i}.yml", f"kistype: func\nfname: f{i}\nfmode: Calculate\n")
        lines = ["kistype: flow", "status: 1", "flow_name: big", "flows:"]
        for i in range(10_000):
            lines += [f"  - fname: f{i % 10}", "    params:", f"      k: v{i}"]
        write(tmp_path, "flow-big.yml", "\n".join(lines) + "\n")
        loaded: list[object] = []
        # 1,500 stages took 11 s here before (quadratic linking, pure-Python YAML).
        assert cpu_seconds(lambda: loaded.append(kf.load_config_dir(tmp_path))) < 2.0
        flow = kf.pool.get_flow("big")
        assert flow is not None
        assert [s.params["k"] for s in flow.stages] == [f"v{i}" for i in range(10_000)]

    def test_a_16_mb_file_loads_in_under_5_s(self, tmp_path: Path) -> None:
        lines = ["kistype: conn", "cname: big", "type: jsonl", "addrs: out.jsonl", "params:"]
        size, i = 0, 0
        while size < 16 * 1024 * 1024:
            lines.append(f"    setting_{i:07d}: the value of setting number {i}, as a sentence")
            size += len(lines[-1]) + 1
            i += 1
        write(tmp_path, "conn-big.yml", "\n".join(lines) + "\n")
        loaded: list[kf.LoadedConfig] = []
        # 19 s before (PyYAML's pure-Python loader, though libyaml is installed).
        assert cpu_seconds(lambda: loaded.append(kf.load_config_dir(tmp_path))) < 5.0
        params = loaded[0].conns["big"].params
        assert len(params) == i
        assert params["setting_0000007"] == "the value of setting number 7, as a sentence"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- hostile YAML ---------------------------------------------------------------------------

KINDS: dict[str, type] = {
    "flow": kf.FlowConfig,
    "func": kf.FuncConfig,
    "conn": kf.ConnConfig,
    "global": kf.GlobalConfig,
}


def inline_bomb() -> str:
    """A flow-style value that holds its own billion laughs: 9**9 strings expanded."""
    parts = ["&a0 [" + ", ".join(['"lol"'] * 9) + "]"]
    parts += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "[" + ", ".join(parts) + "]"


PRELUDE = "".join(
    f"l{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9 if i else ['"lol"'] * 9) + "]\n"
    for i in range(9)
)
"""Anchors under unknown keys (warnings only, as KisFlow-Go ignores them), as in the
586-byte report; the position then holds ``*a8``."""


def bomb_files() -> list[tuple[str, str]]:
    """(case id, file text): a bomb at every position of every kind of file."""
    cases: list[tuple[str, str]] = []
    for style, value, head in (("inline", inline_bomb(), ""), ("alias", "*a8", PRELUDE)):

        def case(where: str, body: str, style: str = style, head: str = head) -> None:
            cases.append((f"{style}-{where}", head + body))

        case("kistype", f"kistype: {value}\n")
        for kind, cls in KINDS.items():
            case(f"{kind}-key", f"kistype: {kind}\n? {value}\n: 1\n")
            case(f"{kind}-unknown", f"kistype: {kind}\nextra: {value}\n")
            for field in yaml_fields(cls):
                case(f"{kind}-{field.name}", f"kistype: {kind}\n{field.name}: {value}\n")
                if field.key.section is None:
                    continue
                item = "- " if field.key.many else ""
                for sub in yaml_fields(field.key.section):
                    body = f"kistype: {kind}\n{field.name}:\n  {item}{sub.name}: {value}\n"
                    case(f"{kind}-{field.name}.{sub.name}", body)
                    case(
                        f"{kind}-{field.name}.{sub.name}-deeper",
                        f"kistype: {kind}\n{field.name}:\n  {item}{sub.name}: {{x: [{value}]}}\n",
                    )
        case("func-faas", f"kistype: func\nfname: f\nfmode: Verify\nfaas: {value}\n")
    return cases


BOMBS = bomb_files()


@pytest.fixture(params=["C", "Python"])
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each YAML test with libyaml's parser (when PyYAML has it) and with PyYAML's own."""
    if request.param == "C":
        if not _yaml.C_LOADER:
            pytest.skip("PyYAML is built without libyaml")
        monkeypatch.setattr(_yaml, "_Loader", yaml.CSafeLoader)
    else:
        monkeypatch.setattr(_yaml, "_Loader", yaml.SafeLoader)
    return str(request.param)


def load_errors(folder: Path, **kwargs: object) -> list[kf.ConfigError]:
    with pytest.raises(kf.ConfigError) as info:
        kf.load_config_dir(folder, **kwargs)  # type: ignore[arg-type]
    return list(info.value.errors)


class TestAliasBombs:
    """An alias bomb anywhere is refused within 1 s and 100 MB, naming the file."""

    @pytest.mark.parametrize(("case", "text"), BOMBS, ids=[c for c, _ in BOMBS])
    def test_refused_fast_and_small(
        self, tmp_path: Path, loader: str, case: str, text: str
    ) -> None:
        file = write(tmp_path, "bomb.yml", text)
        assert len(text) < 1000
        tracemalloc.start()
        try:
            start = time.process_time()
            errors = load_errors(tmp_path, check_faas=False)
            seconds = time.process_time() - start
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert seconds < 1.0
        assert peak < 100 * 1024 * 1024
        assert [e.path for e in errors] == [str(file)]
        assert "aliases repeat more than 1,000,000" in str(errors[0])
        assert len(str(errors[0])) < 1000  # the message never shows the expanded value

    def test_aliases_within_the_limits_load(self, tmp_path: Path) -> None:
        # Shared params through an anchor are what aliases are for: this loads.
        write(tmp_path, "func.yml", "kistype: func\nfname: a\nfmode: Calculate\n")
        flows = "".join("  - fname: a\n    params: *common\n" for _ in range(100))
        write(
            tmp_path,
            "flow.yml",
            "kistype: flow\nflow_name: F\nstatus: 1\n"
            "x-common: &common {level: 3, name: shared}\nflows:\n" + flows,
        )
        loaded = kf.load_config_dir(tmp_path, check_faas=False)
        assert [s.flow_params["level"] for s in loaded.flows["F"].stages] == [3] * 100
        assert [w.key for w in loaded.warnings] == ["x-common"]


class TestYamlLimits:
    """Each limit of a config file, at and just past it, for both parsers."""

    def test_nesting_up_to_the_limit_loads(self, tmp_path: Path, loader: str) -> None:
        levels = _yaml.MAX_DEPTH - 1  # the file's top mapping is the first level
        value = "{a: " * levels + "1" + "}" * levels
        write(tmp_path, "conn.yml", f"kistype: conn\ncname: c\nparams: {value}\n")
        params = kf.load_config_dir(tmp_path).conns["c"].params
        assert _yaml.depth(params) == levels

    def test_nesting_past_the_limit_is_refused(self, tmp_path: Path, loader: str) -> None:
        levels = _yaml.MAX_DEPTH
        value = "{a: " * levels + "1" + "}" * levels
        file = write(tmp_path, "conn.yml", f"kistype: conn\ncname: c\nparams: {value}\n")
        (error,) = load_errors(tmp_path)
        assert error.path == str(file)
        assert error.key == "params" + ".a" * (levels - 1)
        assert f"nested more than {_yaml.MAX_DEPTH} levels deep" in str(error)

    def test_nesting_through_an_alias_counts(self, tmp_path: Path, loader: str) -> None:
        deep = "[" * 40 + "]" * 40
        inner = "[" * 30 + "*deep" + "]" * 30
        text = f"kistype: conn\ncname: c\nx: &deep {deep}\nparams: {{a: {{b: [{inner}]}}}}\n"
        (error,) = load_errors(write(tmp_path, "conn.yml", text).parent)
        assert "levels deep (through *deep)" in str(error)

    def test_a_deep_file_is_refused_without_recursion(self, tmp_path: Path, loader: str) -> None:
        depth = 100_000  # far past the interpreter's recursion limit
        write(tmp_path, "conn.yml", "kistype: conn\ncname: c\nparams:\n" + "- " * depth + "x\n")
        (error,) = load_errors(tmp_path)
        assert error.path == str(tmp_path / "conn.yml")
        assert "deep" in str(error)

    def test_too_many_aliases(self, tmp_path: Path, loader: str) -> None:
        many = ", ".join(["*n"] * _yaml.MAX_ALIASES)
        ok = f"kistype: conn\ncname: c\nparams: {{n: &n 1, list: [{many}]}}\n"
        write(tmp_path, "conn.yml", ok)
        assert len(kf.load_config_dir(tmp_path).conns["c"].params["list"]) == _yaml.MAX_ALIASES
        kf.pool.reset()
        write(tmp_path, "conn.yml", ok.replace("[*n", "[*n, *n"))
        (error,) = load_errors(tmp_path)
        assert error.key == f"params.list[{_yaml.MAX_ALIASES}]"
        assert f"more than {_yaml.MAX_ALIASES:,} aliases" in str(error)

    def test_what_aliases_repeat_is_counted_in_characters(
        self, tmp_path: Path, loader: str
    ) -> None:
        big = "x" * 99_999  # with the value itself, 100,000 per repeat
        uses = _yaml.MAX_ALIAS_EXPANSION // 100_000
        text = "kistype: conn\ncname: c\nparams: {{big: &big {}, again: [{}]}}\n"
        write(tmp_path, "conn.yml", text.format(big, ", ".join(["*big"] * uses)))
        assert len(kf.load_config_dir(tmp_path).conns["c"].params["again"]) == uses
        kf.pool.reset()
        write(tmp_path, "conn.yml", text.format(big, ", ".join(["*big"] * (uses + 1))))
        (error,) = load_errors(tmp_path)
        assert error.key == f"params.again[{uses}]"

    @pytest.mark.parametrize(
        ("text", "key", "why"),
        [
            ("params: &a [1, *a]\n", "params[1]", "the alias *a is inside the value it names"),
            ("params: [*nope]\n", "params[0]", "the alias *nope names no anchor before it"),
            ("x: &a 1\nparams: &a 2\n", "params", "the anchor &a is given twice"),
            ("params: !!set {a}\n", "params", "the tag !!set is not allowed"),
            ("params: {b: !!binary aGk=}\n", "params.b", "the tag !!binary is not allowed"),
            ("params: !!python/name:os.system\n", "params", "!!python/name:os.system"),
            ("params: !custom 1\n", "params", "the tag !custom is not allowed"),
            ("params: {n: " + "7" * 5000 + "}\n", "params.n", "an integer of 5000 digits"),
            ("params: {n: 0x" + "f" * 4000 + "}\n", "params.n", "more than 4300 digits"),
            ("params: {n: 0b" + "1" * 4300 + "}\n", "params.n", "is an integer of 4301 digits"),
            ("params: {n: 2024-13-45}\n", "params.n", "is not a valid timestamp"),
            ("params:\n  <<: 3\n", "params.<<", "'<<' merges a mapping or a list of mappings"),
            ("params: {[a]: 1}\n", "params", "a key must be a plain value"),
        ],
    )
    def test_refused_values_name_the_key(
        self, tmp_path: Path, loader: str, text: str, key: str, why: str
    ) -> None:
        file = write(tmp_path, "conn.yml", "kistype: conn\ncname: c\n" + text)
        (error,) = load_errors(tmp_path)
        assert (error.path, error.key) == (str(file), key)
        assert why in str(error)
        assert str(error).startswith(f"{file}: {key}: line ")

    def test_a_second_document_is_refused(self, tmp_path: Path, loader: str) -> None:
        write(tmp_path, "conn.yml", "kistype: conn\ncname: c\n---\nkistype: conn\ncname: d\n")
        (error,) = load_errors(tmp_path)
        assert "line 3: the file holds a second YAML document" in str(error)

    def test_a_file_over_the_size_cap_is_refused_unread(self, tmp_path: Path) -> None:
        file = tmp_path / "huge.yml"
        with file.open("wb") as f:
            f.write(b"kistype: conn\ncname: c\nparams: {}\n#")
            f.truncate(_yaml.MAX_FILE_BYTES + 1)  # sparse: costs no disk
        start = time.process_time()
        (error,) = load_errors(tmp_path)
        assert time.process_time() - start < 1.0
        assert error.path == str(file)
        assert "is larger than 32 MiB" in str(error)

    def test_plain_data_reads_as_pyyaml_safe_load_reads_it(
        self, tmp_path: Path, loader: str
    ) -> None:
        text = (
            "a: &x {b: 1}\nc: *x\nd:\n  <<: *x\n  e: 2\nf: [<<: [{g: 1}, {g: 2, h: 3}]]\n"
            "i: 2024-01-01\nj: 0x1f\nk: 1_000\nl: .inf\nm: ~\nn: yes\no: ''\np:\nq: !!int '3'\n"
            "r: ! 5\ns: &s str\nt: *s\nu: 012\nv: -7\nw: 1:30\nx: 'quoted: yes'\n"
            "y: |\n  two\n  lines\n"
        )
        assert _yaml.load(text) == yaml.safe_load(text)

    def test_kisflows_folders_read_the_same_with_both_parsers(
        self, kisflow_go_conf: Path, loader: str
    ) -> None:
        for file in sorted(kisflow_go_conf.rglob("*.yml")):
            text = file.read_text(encoding="utf-8")
            assert _yaml.load(text) == yaml.safe_load(text), file

    def test_the_c_parser_is_used_where_present(self) -> None:
        assert _yaml.C_LOADER is bool(yaml.__with_libyaml__)
        assert _yaml._Loader is (yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader)


class TestKeysGivenTwice:
    """A key given twice in one mapping is a ConfigError naming the file and both lines."""

    def test_a_disabled_flow_cannot_be_enabled_by_a_second_status(
        self, tmp_path: Path, loader: str
    ) -> None:
        file = write(
            tmp_path,
            "flow.yml",
            "kistype: flow\nstatus: 0\nflow_name: F\nflows: []\nstatus: 1\n",
        )
        (error,) = load_errors(tmp_path)
        assert (error.path, error.key) == (str(file), "status")
        assert str(error) == (
            f"{file}: status: line 5: the key 'status' is given twice in one mapping "
            f"(lines 2 and 5); give it once"
        )
        assert kf.pool.get_flows() == {}

    @pytest.mark.parametrize(
        ("text", "key", "lines"),
        [
            ("option:\n  retry_times: 1\n  retry_times: 2\n", "option.retry_times", (5, 6)),
            (
                "option:\n  default_params: {k: 1, k: 2}\n",
                "option.default_params.k",
                (5, 5),
            ),
            ("source: {name: a, must: [x], name: b}\n", "source.name", (4, 4)),
            ("option: {}\noption: {}\n", "option", (4, 5)),
        ],
    )
    def test_nested_keys(
        self, tmp_path: Path, loader: str, text: str, key: str, lines: tuple[int, int]
    ) -> None:
        write(tmp_path, "func.yml", "kistype: func\nfname: a\nfmode: Verify\n" + text)
        (error,) = load_errors(tmp_path)
        assert error.key == key
        assert f"(lines {lines[0]} and {lines[1]})" in str(error)

    def test_in_a_list_of_flows(self, tmp_path: Path, loader: str) -> None:
        write(
            tmp_path,
            "flow.yml",
            "kistype: flow\nflow_name: F\nflows:\n  - fname: a\n  - fname: b\n"
            "    params: {x: 1}\n    fname: c\n",
        )
        (error,) = load_errors(tmp_path)
        assert error.key == "flows[1].fname"
        assert "(lines 5 and 7)" in str(error)

    def test_the_same_key_in_other_mappings_and_merges_is_fine(
        self, tmp_path: Path, loader: str
    ) -> None:
        write(
            tmp_path,
            "conn.yml",
            "kistype: conn\ncname: c\nparams:\n  base: &base {k: 1, j: 2}\n"
            "  one: {<<: *base, k: 3}\n  two: {k: 4}\n",
        )
        params = kf.load_config_dir(tmp_path).conns["c"].params
        assert params["one"] == {"k": 3, "j": 2}
        assert params["two"] == {"k": 4}


class TestHugeNumbers:
    """Integers too long for Python are ConfigErrors, from a file and from code."""

    def test_retry_times_of_5000_digits_in_a_file(self, tmp_path: Path, loader: str) -> None:
        file = write(
            tmp_path,
            "func.yml",
            "kistype: func\nfname: a\nfmode: Verify\noption:\n  retry_times: " + "9" * 5000 + "\n",
        )
        (error,) = load_errors(tmp_path)
        assert (error.path, error.key) == (str(file), "option.retry_times")
        assert "is an integer of 5000 digits; at most 4300 are allowed" in str(error)

    def test_a_count_beyond_64_bits_in_a_file(self, tmp_path: Path) -> None:
        write(
            tmp_path,
            "func.yml",
            f"kistype: func\nfname: a\nfmode: Verify\noption:\n  return_duration: {2**63}\n",
        )
        (error,) = load_errors(tmp_path)
        assert error.key == "option.return_duration"
        assert "must be at most 9223372036854775807 (a 64-bit integer)" in str(error)

    @pytest.mark.parametrize("value", [10**5000, 2**63, -1], ids=["5001-digits", "2**63", "-1"])
    def test_from_code(self, value: int) -> None:
        with pytest.raises(kf.ConfigError) as info:
            kf.FuncOption(retry_times=value)
        assert info.value.key == "retry_times"
        assert len(str(info.value)) < 300
