"""YAML config folders: KisFlow's own configs, every bad-config case, export, fuzzing."""

from __future__ import annotations

import runpy
import shutil
import string
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import hypothesis.strategies as st
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from prometheus_client.parser import text_string_to_metric_families

import kisflow as kf
from kisflow import _faasref, _yaml, configfile
from kisflow._pool import Pool
from kisflow.config import YamlKey, yaml_fields, yaml_key
from kisflow.configfile import (
    conn_yaml,
    export_config,
    flow_yaml,
    func_yaml,
    global_yaml,
    load_config_dir,
)
from kisflow.testing import isolated_pool

RESOURCES = Path(__file__).resolve().parent / "resources"
FAAS_FILE = RESOURCES / "kisflow_go_faas.py"
SOURCE_ROWS = ["This is Data1 from Test", "This is Data2 from Test", "This is Data3 from Test"]


@pytest.fixture
def go_faas(pool: Pool) -> dict[str, Any]:
    """KisFlow's test FaaS/CaaS, registered in this test's pool; returns their namespace."""
    return runpy.run_path(str(FAAS_FILE))


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems(exc: kf.ConfigError) -> list[tuple[str, str | None]]:
    """(file name, key) of each problem a ConfigError carries."""
    return [(Path(e.path or "").name, e.key) for e in exc.errors]


class TestKisFlowConfigs:
    """KisFlow's own load_conf/ folder loads unchanged and its flows run as in its tests."""

    def test_loads_every_flow_and_the_global_config(
        self, kisflow_go_conf: Path, go_faas: dict[str, Any], pool: Pool
    ) -> None:
        loaded = kf.load_config_dir(kisflow_go_conf)
        names = {"flowName1", "flowName2", "flowName3", "flowName4", "flowName5"}
        assert set(loaded.flows) == names | {"flowFork1", "StuAvg"}
        assert set(pool.get_flows()) == set(loaded.flows)
        assert loaded.global_config == kf.GlobalConfig(
            prometheus_enable=True, prometheus_listen=True, prometheus_serve="0.0.0.0:20004"
        )
        assert loaded.conns["ConnName1"].save == ("funcName2",)
        assert loaded.conns["ConnName1"].params == {"args1": "value1", "args2": "value2"}
        func2 = loaded.funcs["funcName2"]
        assert func2.fmode is kf.Mode.SAVE
        assert func2.conn is not None
        assert func2.conn.type == "redis"
        assert loaded.funcs["abortFunc"].option == kf.FuncOption()
        assert loaded.files["flow:flowName1"].name == "flow-FlowName1.yml"

    def test_flow_name1_runs_with_params_and_the_user_connector(
        self, kisflow_go_conf: Path, go_faas: dict[str, Any]
    ) -> None:
        flow = kf.load_config_dir(kisflow_go_conf).flows["flowName1"]
        seen_params: list[dict[str, Any]] = []
        kf.faas(
            "funcName3", lambda flow: seen_params.append(flow.get_func_param_all()), replace=True
        )
        result = flow.run(SOURCE_ROWS)
        # funcName3, the last stage, commits nothing: the run still completes.
        assert result.ended is kf.RunEnd.COMPLETED
        assert result.output == []
        assert [s.rows_out for s in result.stages] == [3, 3, 0]
        # funcName2 called the user CaaS once per row, with funcName1's results.
        saved = [args for what, args in go_faas["CALLS"] if what == "save"]
        assert saved == [f"data from funcName[funcName1], index = {i}" for i in range(3)]
        assert ("init", "ConnName1") in go_faas["CALLS"]
        # The user's init replaced the built-in redis one: no client was ever made.
        connector = flow.stages[1].connector
        assert connector is not None
        assert connector._store is None
        assert seen_params == [
            {
                "default1": "funcName3_param1",
                "default2": "funcName3_param2",
                "myKey1": "flowValue3-1",
                "myKey2": "flowValue3-2",
            }
        ]

    def test_flow_name2_aborts_after_abort_func(
        self, kisflow_go_conf: Path, go_faas: dict[str, Any]
    ) -> None:
        result = kf.load_config_dir(kisflow_go_conf).flows["flowName2"].run(SOURCE_ROWS)
        assert result.ended is kf.RunEnd.ABORTED
        assert result.stopped_at == "abortFunc"
        assert result.stage("funcName3").calls == 0
        assert [n for n, _ in go_faas["SEEN"]] == ["funcName1"] * 3 + ["abortFunc"] * 3

    def test_flow_name3_reuses_data(self, kisflow_go_conf: Path, go_faas: dict[str, Any]) -> None:
        result = kf.load_config_dir(kisflow_go_conf).flows["flowName3"].run(SOURCE_ROWS)
        rows3 = [row for name, row in go_faas["SEEN"] if name == "funcName3"]
        assert rows3 == [f"data from funcName[funcName1], index = {i}" for i in range(3)]
        assert result.stage("dataReuseFunc").rows_out == 3

    def test_flow_name4_forces_entry_into_the_next_function(
        self, kisflow_go_conf: Path, go_faas: dict[str, Any]
    ) -> None:
        result = kf.load_config_dir(kisflow_go_conf).flows["flowName4"].run(SOURCE_ROWS)
        assert result.stage("funcName3").calls == 1
        assert result.stage("funcName3").rows_in == 0
        assert result.stage("noResultFunc").rows_out == 0

    def test_flow_name5_jumps_back_forever_and_hits_the_step_limit(
        self, kisflow_go_conf: Path, go_faas: dict[str, Any]
    ) -> None:
        flow = kf.load_config_dir(kisflow_go_conf).flows["flowName5"]
        with pytest.raises(kf.FlowLoopError) as info:
            flow.run(SOURCE_ROWS, max_steps=30)
        assert info.value.flow == "flowName5"
        assert info.value.cycle == ("funcName1", "funcName2", "jumpFunc")
        assert info.value.steps == 30

    def test_stu_avg_converts_rows_to_the_declared_types(
        self, kisflow_go_conf: Path, go_faas: dict[str, Any]
    ) -> None:
        flow = kf.load_config_dir(kisflow_go_conf).flows["StuAvg"]
        result = flow.run(
            [
                {"stu_id": 101, "score_1": 100, "score_2": 90, "score_3": 80},
                '{"stu_id": 102, "score_1": 100, "score_2": 70, "score_3": 60}',
            ]
        )
        out = go_faas["AvgStuScoreOut"]
        assert result.output == [out(101, 90.0), out(102, pytest.approx(76.6666667))]

    def test_flow_fork1_forks_run_independently(
        self, kisflow_go_conf: Path, go_faas: dict[str, Any]
    ) -> None:
        flow = kf.load_config_dir(kisflow_go_conf).flows["flowFork1"]
        fork = flow.fork()
        assert fork.id != flow.id
        assert [s.name for s in fork.stages] == ["funcName1", "funcName3"]
        assert [dict(s.params) for s in fork.stages] == [dict(s.params) for s in flow.stages]
        first = flow.run(SOURCE_ROWS[:1])
        second = fork.run(SOURCE_ROWS)
        assert first.stage("funcName1").rows_in == 1
        assert second.stage("funcName1").rows_in == 3

    def test_without_faas_every_unregistered_function_is_listed(
        self, kisflow_go_conf: Path, pool: Pool
    ) -> None:
        with pytest.raises(kf.ConfigError) as info:
            kf.load_config_dir(kisflow_go_conf)
        found = problems(info.value)
        # funcName2 is a Save stage on a built-in (redis) connector: it needs no FaaS.
        assert ("flow-FlowName1.yml", "flows[0].fname") in found
        assert ("flow-FlowName1.yml", "flows[2].fname") in found
        assert ("flow-FlowName1.yml", "flows[1].fname") not in found
        assert ("flow-StuAvg.yml", "flows[1].fname") in found
        assert len(found) == 17
        assert pool.get_flows() == {}, "nothing is registered when the folder has problems"

    def test_check_faas_off_loads_without_callbacks(self, kisflow_go_conf: Path) -> None:
        loaded = kf.load_config_dir(kisflow_go_conf, check_faas=False)
        assert len(loaded.flows) == 7
        with pytest.raises(kf.FunctionNotFoundError):
            loaded.flows["flowName1"].run(SOURCE_ROWS)


class TestKisFlowExport:
    """Export writes KisFlow's shape: KisFlow's own export_conf/ round-trips byte for byte."""

    def test_export_of_kisflow_export_is_identical(
        self, kisflow_go_export: Path, go_faas: dict[str, Any], tmp_path: Path
    ) -> None:
        flow = kf.load_config_dir(kisflow_go_export).flows["flowName1"]
        written = export_config(flow, tmp_path / "out")
        assert sorted(p.name for p in written) == sorted(
            p.name for p in kisflow_go_export.iterdir()
        )
        for path in written:
            original = (kisflow_go_export / path.name).read_text()
            assert path.read_text() == original.rstrip("\n") + "\n", path.name

    def test_export_then_import_gives_an_equal_flow(
        self, kisflow_go_conf: Path, go_faas: dict[str, Any], tmp_path: Path
    ) -> None:
        flow = kf.load_config_dir(kisflow_go_conf).flows["flowName1"]
        export_config(flow, tmp_path)
        with isolated_pool():
            runpy.run_path(str(FAAS_FILE))
            again = kf.load_config_dir(tmp_path).flows["flowName1"]
        assert again.config == flow.config
        assert [s.config for s in again.stages] == [s.config for s in flow.stages]
        assert [dict(s.params) for s in again.stages] == [dict(s.params) for s in flow.stages]

    def test_exact_text_of_each_file(self) -> None:
        conn = kf.ConnConfig(cname="db", addrs="/tmp/x.db", type="sqlite", key="t", save=("s",))
        func = kf.FuncConfig(
            fname="s",
            fmode="Save",
            source=kf.Source(name="src", must=("a",)),
            option=kf.FuncOption(retry_times=2, default_params={"k": "", "n": 1.5}),
        ).with_connector(conn)
        flow_config = kf.FlowConfig(
            flow_name="F", flows=[kf.FlowFunctionParam(fname="s", params={"p": [1, "x"]})]
        )
        assert flow_yaml(flow_config) == (
            "kistype: flow\nstatus: 1\nflow_name: F\nflows:\n    - fname: s\n"
            "      params:\n          p: [1, x]\n"
        )
        assert func_yaml(func) == (
            "kistype: func\nfname: s\nfmode: Save\nsource:\n    name: src\n    must:\n"
            "        - a\noption:\n    cname: db\n    retry_times: 2\n    return_duration: 0\n"
            '    default_params:\n        k: ""\n        n: 1.5\n'
        )
        assert conn_yaml(conn) == (
            "kistype: conn\ncname: db\naddrs: /tmp/x.db\ntype: sqlite\nkey: t\nparams: {}\n"
            "load: []\nsave:\n    - s\n"
        )

    def test_a_name_that_cannot_be_a_file_name_is_refused(self, tmp_path: Path) -> None:
        kf.faas("a", lambda flow: None)
        flow = kf.FlowBuilder("bad/name").calculate("a").build()
        with pytest.raises(kf.ConfigError) as info:
            export_config(flow, tmp_path)
        assert info.value.key == "flow_name"
        assert list(tmp_path.iterdir()) == []


VALID = {
    "func-a.yml": "kistype: func\nfname: a\nfmode: Verify\n",
    "func-s.yml": "kistype: func\nfname: s\nfmode: Save\noption:\n  cname: store\n",
    "conn.yml": "kistype: conn\ncname: store\naddrs: out.jsonl\ntype: jsonl\n",
    "flow.yml": "kistype: flow\nflow_name: F\nflows:\n  - fname: a\n  - fname: s\n",
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A valid config folder (one Verify and one built-in Save stage) to break."""
    for name, text in VALID.items():
        write(tmp_path, name, text)
    kf.faas("a", lambda flow: flow.commit_row_batch(flow.input()))
    return tmp_path


class TestBadConfigs:
    """Every bad-config case is a ConfigError naming the file and the key, all at once."""

    def load_errors(self, folder: Path) -> list[tuple[str, str | None]]:
        with pytest.raises(kf.ConfigError) as info:
            load_config_dir(folder)
        assert isinstance(info.value, kf.KisFlowError)
        assert all(isinstance(e, kf.ConfigError) for e in info.value.errors)
        for e in info.value.errors:
            assert e.path is not None
            assert str(e) in str(info.value)
        return problems(info.value)

    def test_the_valid_folder_loads_and_runs(self, folder: Path) -> None:
        loaded = load_config_dir(folder)
        result = loaded.flows["F"].run([{"x": 1}])
        assert result.output == [{"x": 1}]
        assert (folder / "out.jsonl").read_text() == '{"x": 1}\n'

    def test_not_yaml(self, folder: Path) -> None:
        write(folder, "broken.yml", "kistype: func\nfname: [unclosed\n")
        assert self.load_errors(folder) == [("broken.yml", None)]

    def test_missing_kistype(self, folder: Path) -> None:
        write(folder, "x.yaml", "fname: b\nfmode: Verify\n")
        assert self.load_errors(folder) == [("x.yaml", "kistype")]

    def test_unknown_kistype_lists_the_four(self, folder: Path) -> None:
        write(folder, "x.yml", "kistype: function\nfname: b\n")
        with pytest.raises(kf.ConfigError, match="flow, func, conn, global") as info:
            load_config_dir(folder)
        assert problems(info.value) == [("x.yml", "kistype")]

    def test_unknown_fmode_lists_the_five(self, folder: Path) -> None:
        write(folder, "x.yml", "kistype: func\nfname: b\nfmode: Transform\n")
        with pytest.raises(kf.ConfigError, match="Verify, Save, Load, Calculate, Expand") as info:
            load_config_dir(folder)
        assert problems(info.value) == [("x.yml", "fmode")]

    def test_wrong_field_types_are_each_reported(self, folder: Path) -> None:
        write(
            folder,
            "x.yml",
            "kistype: func\nfname: b\nfmode: Verify\nsource:\n  must: order_id\n"
            "option:\n  retry_times: three\n  default_params: [1]\n",
        )
        write(folder, "y.yml", "kistype: flow\nflow_name: G\nstatus: 2\nflows: {fname: a}\n")
        write(folder, "z.yml", "kistype: conn\ncname: c2\naddrs: 6379\nsave: f\n")
        write(folder, "g.yml", "kistype: global\nprometheus_enable: 'yes'\n")
        assert sorted(self.load_errors(folder)) == sorted(
            [
                ("x.yml", "source.must"),
                ("x.yml", "option.retry_times"),
                ("x.yml", "option.default_params"),
                ("y.yml", "status"),
                ("y.yml", "flows"),
                ("z.yml", "addrs"),
                ("z.yml", "save"),
                ("g.yml", "prometheus_enable"),
            ]
        )

    def test_unknown_and_missing_keys(self, folder: Path) -> None:
        # Unknown keys are warnings (KisFlow-Go ignores them); the missing key is the problem.
        write(folder, "x.yml", "kistype: func\nfname: b\nfmod: Verify\n")
        write(folder, "y.yml", "kistype: flow\nflow_name: G\nflows:\n  - fname: a\n    parms: {}\n")
        with pytest.raises(kf.ConfigError) as info:
            load_config_dir(folder)
        assert problems(info.value) == [("x.yml", "fmode")]
        assert "the file gives fmod: a typo of fmode?" in str(info.value.errors[0])
        notes = [n for n in info.value.__notes__ if ": status: " not in n]  # see TestWarnings
        assert len(notes) == 2
        assert any("x.yml: fmod: " in n and "did you mean 'fmode'?" in n for n in notes)
        assert any("y.yml: flows[0].parms: " in n and "did you mean 'params'?" in n for n in notes)
        write(folder, "flow.yml", VALID["flow.yml"].replace("flows:", "status: 1\nflows:"))
        write(folder, "y.yml", "kistype: flow\nflow_name: G\nstatus: 1\nflows:\n  - parms: {}\n")
        with pytest.raises(kf.ConfigError) as info:
            load_config_dir(folder, strict=True)
        assert sorted(problems(info.value)) == [
            ("x.yml", "fmod"),
            ("x.yml", "fmode"),
            ("y.yml", "flows[0].fname"),
            ("y.yml", "flows[0].parms"),
        ]

    @pytest.mark.parametrize(
        ("text", "key"),
        [
            ("kistype: flow\nflow_name: F\n", "flow_name"),
            ("kistype: func\nfname: a\nfmode: Calculate\n", "fname"),
            ("kistype: conn\ncname: store\n", "cname"),
        ],
    )
    def test_duplicate_names_name_both_files(self, folder: Path, text: str, key: str) -> None:
        write(folder, "zz-dup.yml", text)
        with pytest.raises(kf.ConfigError) as info:
            load_config_dir(folder)
        assert problems(info.value) == [("zz-dup.yml", key)]
        message = str(info.value.errors[0])
        assert "zz-dup.yml" in message
        assert any(original in message for original in VALID)

    def test_flow_naming_a_missing_function(self, folder: Path) -> None:
        write(
            folder,
            "flow.yml",
            "kistype: flow\nflow_name: F\nflows:\n  - fname: a\n  - fname: nope\n",
        )
        with pytest.raises(kf.ConfigError, match="'F' names function 'nope'") as info:
            load_config_dir(folder)
        assert problems(info.value) == [("flow.yml", "flows[1].fname")]

    def test_function_naming_a_missing_connector(self, folder: Path) -> None:
        write(
            folder, "func-s.yml", "kistype: func\nfname: s\nfmode: Save\noption:\n  cname: gone\n"
        )
        with pytest.raises(kf.ConfigError, match="'s' names connector 'gone'") as info:
            load_config_dir(folder)
        assert problems(info.value) == [("func-s.yml", "option.cname")]

    def test_unregistered_faas(self, folder: Path, pool: Pool) -> None:
        pool.reset()
        with pytest.raises(kf.ConfigError, match=r"'a' .* has no FaaS registered") as info:
            load_config_dir(folder)
        assert problems(info.value) == [("flow.yml", "flows[0].fname")]

    def test_every_problem_of_the_folder_at_once(self, folder: Path, pool: Pool) -> None:
        for name in ("not_yaml.yml", "no_kistype.yml", "unknown_fmode.yml", "wrong_types.yml"):
            shutil.copy(RESOURCES / "bad_yaml" / name, folder / name)
        write(folder, "flow2.yml", "kistype: flow\nflow_name: F2\nflows:\n  - fname: missing\n")
        found = self.load_errors(folder)
        assert ("not_yaml.yml", None) in found
        assert ("no_kistype.yml", "kistype") in found
        assert ("unknown_fmode.yml", "fmode") in found
        assert ("wrong_types.yml", "option.retry_times") in found
        assert ("flow2.yml", "flows[0].fname") in found
        assert len(found) == 7
        assert pool.get_flows() == {}

    def test_a_flow_already_in_the_pool(self, folder: Path) -> None:
        load_config_dir(folder)
        with pytest.raises(kf.ConfigError, match="already in the pool") as info:
            load_config_dir(folder)
        assert problems(info.value) == [("flow.yml", "flow_name")]

    def test_not_a_folder_and_empty_folder(self, tmp_path: Path) -> None:
        with pytest.raises(kf.ConfigError, match="not a folder") as info:
            load_config_dir(tmp_path / "absent")
        assert info.value.errors[0].path == str(tmp_path / "absent")
        with pytest.raises(kf.ConfigError, match=r"no \.yml or \.yaml files"):
            load_config_dir(tmp_path)

    def test_disabled_flows_are_read_but_not_built(self, folder: Path, pool: Pool) -> None:
        write(folder, "flow-off.yml", "kistype: flow\nstatus: 0\nflow_name: Disabled\nflows: []\n")
        loaded = load_config_dir(folder)
        assert loaded.disabled == ("Disabled",)
        assert set(pool.get_flows()) == {"F"}


class TestHostileYaml:
    """Malformed and hostile files fail as KisFlowErrors, never as raw errors or hangs."""

    def test_python_object_tags_are_refused(self, tmp_path: Path) -> None:
        marker = tmp_path / "pwned"
        write(
            tmp_path,
            "evil.yml",
            f"kistype: func\nfname: f\nfmode: !!python/object/apply:os.system\n"
            f"  - touch {marker}\n",
        )
        with pytest.raises(kf.ConfigError, match="python/object") as info:
            load_config_dir(tmp_path)
        assert problems(info.value) == [("evil.yml", "fmode")]
        assert not marker.exists()

    @pytest.mark.parametrize(
        ("name", "key"),
        [
            ("not_yaml.yml", None),
            ("python_tag.yml", "fmode"),
            ("no_kistype.yml", "kistype"),
            ("unknown_kistype.yml", "kistype"),
            ("unknown_fmode.yml", "fmode"),
            ("wrong_types.yml", "option.retry_times"),
            ("not_a_mapping.yml", None),
            ("not_utf8.yml", None),
            ("bad_flow.yml", "status"),
            ("recursive_alias.yml", "a[0]"),
            # libyaml's scanner stops it first (key None); PyYAML's reaches the depth limit.
            ("deep_nesting.yml", None if _yaml.C_LOADER else "params" + "[0]" * 63),
            ("billion_laughs.yml", "f[2]"),
        ],
    )
    def test_each_malformed_resource(self, tmp_path: Path, name: str, key: str | None) -> None:
        shutil.copy(RESOURCES / "bad_yaml" / name, tmp_path / name)
        with pytest.raises(kf.ConfigError) as info:
            load_config_dir(tmp_path)
        assert (name, key) in problems(info.value)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(text=st.text(max_size=300))
    def test_random_text_fails_cleanly(self, text: str) -> None:
        self.check_text(text)

    @settings(max_examples=150, deadline=None)
    @given(
        data=st.dictionaries(
            st.sampled_from(
                [
                    "kistype",
                    "fname",
                    "fmode",
                    "flow_name",
                    "flows",
                    "cname",
                    "status",
                    "option",
                    "source",
                    "params",
                    "save",
                    "faas",
                    "addrs",
                    "prometheus_enable",
                ]
            ),
            st.recursive(
                st.none()
                | st.booleans()
                | st.integers()
                | st.floats()
                | st.text(max_size=8)
                | st.sampled_from(["flow", "func", "conn", "global", "Verify", "Save"]),
                lambda inner: (
                    st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3)
                ),
                max_leaves=8,
            ),
            max_size=6,
        )
    )
    def test_random_config_shapes_fail_cleanly(self, data: dict[str, Any]) -> None:
        self.check_text(yaml.safe_dump(data))

    def check_text(self, text: str) -> None:
        with isolated_pool(), _tmp_folder() as folder:
            write(folder, "x.yml", text)
            try:
                load_config_dir(folder, check_faas=False)
            except kf.ConfigError as exc:
                errors = exc.errors
            else:
                return
        assert errors
        assert all(e.path is not None for e in errors)


class _tmp_folder:
    def __enter__(self) -> Path:
        import tempfile

        self._dir = tempfile.TemporaryDirectory()
        return Path(self._dir.name)

    def __exit__(self, *exc: object) -> None:
        self._dir.cleanup()


class TestFaasReferences:
    """A func config may name its FaaS as module:function, imported only when allowed."""

    def module(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        write(
            tmp_path / "code",
            "refmod_kf.py",
            "def double(flow):\n    flow.commit_row_batch([r * 2 for r in flow.input()])\n",
        )
        monkeypatch.syspath_prepend(str(tmp_path / "code"))
        write(
            tmp_path / "conf",
            "func.yml",
            "kistype: func\nfname: Double\nfmode: Calculate\nfaas: refmod_kf:double\n",
        )
        write(
            tmp_path / "conf",
            "flow.yml",
            "kistype: flow\nflow_name: D\nflows:\n  - fname: Double\n",
        )

    def test_refused_by_default(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.module(tmp_path, monkeypatch)
        with pytest.raises(kf.ConfigError, match="allow_imports=True") as info:
            load_config_dir(tmp_path / "conf")
        assert problems(info.value) == [("func.yml", "faas"), ("flow.yml", "flows[0].fname")]

    def test_imported_and_run_when_allowed(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pool: Pool
    ) -> None:
        self.module(tmp_path, monkeypatch)
        loaded = load_config_dir(tmp_path / "conf", allow_imports=True)
        assert loaded.flows["D"].run([1, 2]).output == [2, 4]
        assert pool.get_faas("Double") is not None

    @pytest.mark.parametrize(
        ("ref", "match"),
        [
            ("no colon", "must be 'module:function'"),
            ("refmod_missing_kf:f", "cannot import module"),
            ("refmod_kf:absent", "'absent' not found"),
        ],
    )
    def test_bad_references(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ref: str, match: str
    ) -> None:
        self.module(tmp_path, monkeypatch)
        write(
            tmp_path / "conf",
            "func.yml",
            f"kistype: func\nfname: Double\nfmode: Calculate\nfaas: '{ref}'\n",
        )
        with pytest.raises(kf.ConfigError, match=match) as info:
            load_config_dir(tmp_path / "conf", allow_imports=True)
        assert ("func.yml", "faas") in problems(info.value)

    @pytest.mark.parametrize(
        ("ref", "allow"),
        [("no colon", True), ("os:getcwd", False), ("refmod_missing_kf:f", True), ("os:sep", True)],
    )
    def test_resolve_raises_only_config_errors(self, ref: str, allow: bool) -> None:
        """An unusable reference is a ConfigError keyed ``faas``; no private class leaks."""
        with pytest.raises(kf.ConfigError) as info:
            _faasref.resolve(ref, allow_imports=allow)
        assert type(info.value) is kf.ConfigError
        assert info.value.key == "faas"


NAMES = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=12)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
    max_leaves=6,
)
PARAMS = st.dictionaries(
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=8),
    VALUES,
    max_size=3,
)


@st.composite
def flows(draw: st.DrawFn) -> tuple[kf.FlowConfig, list[kf.FuncConfig]]:
    names = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    conn = kf.ConnConfig(
        cname=draw(NAMES),
        addrs=draw(st.text(max_size=20, alphabet=st.characters(exclude_categories=["Cs"]))),
        type=draw(st.sampled_from(["kafka", "mysql", "es", "custom"])),
        key=draw(NAMES),
        params=draw(PARAMS),
    )
    funcs = []
    for name in names:
        func = kf.FuncConfig(
            fname=name,
            fmode=draw(st.sampled_from(list(kf.Mode))),
            source=kf.Source(name=draw(NAMES), must=tuple(draw(st.lists(NAMES, max_size=3)))),
            option=kf.FuncOption(
                retry_times=draw(st.integers(0, 5)),
                return_duration=draw(st.integers(0, 10_000)),
                default_params=draw(PARAMS),
            ),
        )
        if draw(st.booleans()):
            func = func.with_connector(conn)
        funcs.append(func)
    bound = [f for f in funcs if f.conn is not None]
    save = tuple(f.fname for f in bound if f.fmode is kf.Mode.SAVE)
    load = tuple(f.fname for f in bound if f.fmode is kf.Mode.LOAD)
    conn = kf.ConnConfig(**{**conn.__getstate__(), "save": save, "load": load})  # type: ignore[attr-defined]
    funcs = [f.with_connector(conn) if f.conn is not None else f for f in funcs]
    config = kf.FlowConfig(
        flow_name=draw(NAMES),
        flows=[kf.FlowFunctionParam(fname=f.fname, params=draw(PARAMS)) for f in funcs],
    )
    return config, funcs


class TestRoundTrip:
    """Export then import gives an equal flow, for any generated config."""

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(generated=flows())
    def test_export_import_round_trip(
        self, generated: tuple[kf.FlowConfig, list[kf.FuncConfig]]
    ) -> None:
        config, funcs = generated
        with isolated_pool(), _tmp_folder() as folder:
            flow = kf.Flow(config)
            for func, item in zip(funcs, config.flows, strict=True):
                flow.append_function(func, item.params)
            export_config(flow, folder)
            again = load_config_dir(folder, check_faas=False).flows[config.flow_name]
        assert again.config == flow.config
        assert [s.config for s in again.stages] == funcs
        assert [dict(s.flow_params) for s in again.stages] == [i.params for i in config.flows]


# One config of each kind with every field that has a default set to something else.
EVERY_FIELD_SET: dict[str, Any] = {
    "flow": kf.FlowConfig(
        flow_name="F",
        status=0,
        flows=[kf.FlowFunctionParam(fname="f", params={"p": [1, "x"], "on": "yes"})],
    ),
    "func": kf.FuncConfig(
        fname="f",
        fmode="Save",
        source=kf.Source(name="src", must=("id", "Off")),
        option=kf.FuncOption(
            cname="c", retry_times=2, return_duration=50, default_params={"d": {"n": 1.5}}
        ),
    ),
    "conn": kf.ConnConfig(
        cname="c",
        addrs="127.0.0.1:6379",
        type="redis",
        key="k",
        params={"db": 1},
        load=("g",),
        save=("f",),
    ),
    "global": kf.GlobalConfig(
        prometheus_enable=True, prometheus_listen=True, prometheus_serve="0.0.0.0:20004"
    ),
}
WRITERS: dict[str, Any] = {
    "flow": flow_yaml,
    "func": func_yaml,
    "conn": conn_yaml,
    "global": global_yaml,
}
NOT_YAML_FIELDS: dict[type, list[str]] = {kf.FuncConfig: ["conn"]}
"""Fields that are no YAML key, on purpose."""
LOADER_KEYS: dict[type, list[str]] = {kf.FuncConfig: ["faas"]}
"""YAML keys the loader reads itself, outside the config classes."""


def schema_keys(cls: type) -> list[str]:
    """The class's YAML keys as its attrs fields list them, in declaration order."""
    return [f.name for f in attrs.fields(cls) if f.name not in NOT_YAML_FIELDS.get(cls, [])]


def nested(config: Any, name: str) -> list[Any]:
    """The configs held by a field: [the section], its list's items, or [] for a value."""
    value = getattr(config, name)
    if attrs.has(type(value)):
        return [value]
    if isinstance(value, tuple) and value and attrs.has(type(value[0])):
        return list(value)
    return []


def default_of(field: attrs.Attribute[Any]) -> Any:
    """The value a field has when it is not given."""
    factory = getattr(field.default, "factory", None)  # an attrs.Factory
    return factory() if callable(factory) else field.default


def load_file(path: Path) -> Any:
    """The config one file holds, read by the loader's per-file step (checks, build)."""
    found = configfile._Problems()
    parsed = configfile._parse(path, yaml.safe_load(path.read_text(encoding="utf-8")), found)
    assert parsed is not None, [str(p) for p in found.items]
    return parsed[1].config


class TestSchema:
    """The attrs classes are the one schema: the loader's tables and the writers follow it."""

    def test_every_field_declares_whether_it_is_a_yaml_key(self) -> None:
        for cls in {type(c) for c in self.every_config()}:
            missing = [f.name for f in attrs.fields(cls) if "yaml" not in f.metadata]
            assert missing == [], f"{cls.__name__}: add metadata=yaml_key(...) or NOT_YAML"

    def test_every_field_with_a_default_is_set_in_the_round_trip_configs(self) -> None:
        """So the round trip covers every key: a new field must get a value above."""
        at_default = [
            f"{type(c).__name__}.{f.name}"
            for c in self.every_config()
            for f in attrs.fields(type(c))
            if f.name in schema_keys(type(c))
            and f.default is not attrs.NOTHING
            and getattr(c, f.name) == default_of(f)
        ]
        assert at_default == []

    @pytest.mark.parametrize("kind", list(EVERY_FIELD_SET))
    def test_the_loader_knows_exactly_the_schema_keys(self, kind: str) -> None:
        self.check_table(EVERY_FIELD_SET[kind], configfile._TABLES[kind])

    def check_table(self, config: Any, table: Any) -> None:
        cls = type(config)
        assert list(table.keys) == schema_keys(cls) + LOADER_KEYS.get(cls, []), cls.__name__
        assert sorted([*table.checks, *table.sections]) == sorted(table.keys)
        assert list(table.required) == [
            n for n in schema_keys(cls) if attrs.fields_dict(cls)[n].default is attrs.NOTHING
        ]
        for name, (sub, _many) in table.sections.items():
            self.check_table(nested(config, name)[0], sub)

    @pytest.mark.parametrize("kind", list(EVERY_FIELD_SET))
    def test_the_writer_writes_exactly_the_schema_keys(self, kind: str) -> None:
        doc = yaml.safe_load(WRITERS[kind](EVERY_FIELD_SET[kind]))
        assert next(iter(doc)) == "kistype"
        assert doc.pop("kistype") == kind
        self.check_written(EVERY_FIELD_SET[kind], doc)

    def check_written(self, config: Any, doc: dict[str, Any]) -> None:
        cls = type(config)
        rank = {f.name: f.key.rank for f in yaml_fields(cls)}
        assert list(doc) == sorted(schema_keys(cls), key=lambda n: rank[n]), cls.__name__
        for name in doc:
            items = nested(config, name)
            written = doc[name] if isinstance(doc[name], list) else [doc[name]]
            if items:
                assert len(written) == len(items)
                for item, item_doc in zip(items, written, strict=True):
                    self.check_written(item, item_doc)

    @pytest.mark.parametrize("kind", list(EVERY_FIELD_SET))
    def test_load_export_load_keeps_every_field(self, kind: str, tmp_path: Path) -> None:
        text = WRITERS[kind](EVERY_FIELD_SET[kind])
        first = load_file(write(tmp_path, "first.yml", text))
        assert first == EVERY_FIELD_SET[kind]
        again = WRITERS[kind](first)
        assert load_file(write(tmp_path, "again.yml", again)) == first
        assert again == text

    def test_a_field_without_yaml_metadata_is_refused(self) -> None:
        @attrs.frozen
        class Forgotten:
            named: str = attrs.field(metadata=yaml_key(lambda v: None))
            forgotten: int = 0

        with pytest.raises(TypeError, match=r"Forgotten\.forgotten has no YAML metadata"):
            yaml_fields(Forgotten)

    @pytest.mark.parametrize(
        "kwargs",
        [{}, {"check": lambda v: None, "section": kf.Source}, {"check": str, "many": True}],
    )
    def test_a_yaml_key_is_a_value_or_a_section(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(TypeError):
            YamlKey(**kwargs)

    def every_config(self) -> list[Any]:
        """The round-trip configs and every config nested in them, at any depth."""
        out: list[Any] = []
        todo = list(EVERY_FIELD_SET.values())
        while todo:
            config = todo.pop()
            out.append(config)
            todo += [item for name in schema_keys(type(config)) for item in nested(config, name)]
        return out


class TestEnableMetrics:
    """``LoadedConfig.enable_metrics`` follows the global file; loading alone starts nothing."""

    @pytest.fixture(autouse=True)
    def _metrics_off(self) -> Iterator[None]:
        """Each test starts and ends with metrics off and no server."""
        kf.metrics.disable()
        yield
        kf.metrics.disable()

    def _folder(self, tmp_path: Path, global_yaml: str | None) -> Path:
        write(
            tmp_path, "flow.yml", "kistype: flow\nflow_name: Evens\nflows:\n  - fname: KeepEven\n"
        )
        write(tmp_path, "func.yml", "kistype: func\nfname: KeepEven\nfmode: Verify\n")
        if global_yaml is not None:
            write(tmp_path, "kis-flow.yml", global_yaml)

        @kf.faas("KeepEven")
        def keep_even(flow: kf.Flow, rows: list[int]) -> None:
            flow.commit_row_batch([r for r in rows if r % 2 == 0])

        return tmp_path

    def test_serves_on_loopback_and_counts_a_known_run(self, tmp_path: Path) -> None:
        folder = self._folder(
            tmp_path,
            "kistype: global\nprometheus_enable: true\nprometheus_listen: true\n"
            "prometheus_serve: 127.0.0.1:0\n",
        )
        loaded = load_config_dir(folder)
        assert not kf.metrics.enabled(), "loading a folder must not turn metrics on"
        server = loaded.enable_metrics()
        assert server is not None
        assert server.url.startswith("http://127.0.0.1:")
        loaded.flows["Evens"].run([1, 2, 3, 4, 6])
        loaded.flows["Evens"].run([8])
        with urllib.request.urlopen(server.url, timeout=5) as resp:
            text = resp.read().decode("utf-8")
        values = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        flow = (("flow_name", "Evens"),)
        stage = (("flow_name", "Evens"), ("func_mode", "Verify"), ("func_name", "KeepEven"))
        assert values["flow_schedule_cnts", flow] == 2
        assert values["flow_data_total", flow] == 6
        assert values["func_rows_in_total", stage] == 6
        assert values["func_rows_out_total", stage] == 4
        kf.metrics.disable()
        assert server.stopped

    def test_enable_without_listen_counts_without_serving(self, tmp_path: Path) -> None:
        folder = self._folder(tmp_path, "kistype: global\nprometheus_enable: true\n")
        assert load_config_dir(folder).enable_metrics() is None
        assert kf.metrics.enabled()

    @pytest.mark.parametrize(
        "global_yaml",
        [None, "kistype: global\nprometheus_enable: false\nprometheus_listen: true\n"],
    )
    def test_off_or_missing_global_does_nothing(
        self, tmp_path: Path, global_yaml: str | None
    ) -> None:
        folder = self._folder(tmp_path, global_yaml)
        assert load_config_dir(folder).enable_metrics() is None
        assert not kf.metrics.enabled()

    def test_bad_address_names_the_global_file_and_leaves_metrics_off(self, tmp_path: Path) -> None:
        folder = self._folder(
            tmp_path,
            "kistype: global\nprometheus_enable: true\nprometheus_listen: true\n"
            "prometheus_serve: 'host:port:extra'\n",
        )
        loaded = load_config_dir(folder)
        with pytest.raises(kf.ConfigError, match="is not host:port") as info:
            loaded.enable_metrics()
        assert info.value.path == str(folder / "kis-flow.yml")
        assert info.value.key == "prometheus_serve"
        assert not kf.metrics.enabled()
