"""KisFlow folders load unchanged (warnings, strict), messages name the cause, export's limits."""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path
from typing import Any

import pytest

import kisflow as kf
from kisflow import _yaml
from kisflow.configfile import ConfigWarning, export_config, load_config_dir

RESOURCES = Path(__file__).resolve().parent / "resources"


@pytest.fixture
def go_faas() -> dict[str, Any]:
    """KisFlow's test FaaS/CaaS, registered in this test's pool."""
    return runpy.run_path(str(RESOURCES / "kisflow_go_faas.py"))


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems(folder: Path, **kwargs: Any) -> list[tuple[str, str | None, str]]:
    """(file name, key, message) of each problem loading ``folder`` reports."""
    with pytest.raises(kf.ConfigError) as info:
        load_config_dir(folder, **kwargs)
    return [(Path(e.path or "").name, e.key, str(e)) for e in info.value.errors]


def add_line(file: Path, after: str, line: str) -> None:
    """Insert ``line`` after the first line starting with ``after``."""
    lines = file.read_text(encoding="utf-8").splitlines()
    at = next(i for i, text in enumerate(lines) if text.startswith(after))
    lines.insert(at + 1, line)
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def kisflow_folder(kisflow_go_conf: Path, tmp_path: Path) -> Path:
    """A copy of KisFlow's own load_conf/ with keys KisFlow-Go ignores and kisflow knows not."""
    conf = tmp_path / "load_conf"
    shutil.copytree(kisflow_go_conf, conf)
    add_line(conf / "flow" / "flow-FlowName1.yml", "flow_name:", "description: my first flow")
    add_line(conf / "flow" / "flow-FlowName1.yml", "  - fname: funcName1", "    parms: {}")
    add_line(conf / "func" / "func-FuncName1.yml", "fmode:", "optoin: {}")
    add_line(conf / "conn" / "conn-ConnName1.yml", "params:", "  args3: value3")
    add_line(conf / "conn" / "conn-ConnName1.yml", "type:", "timeout: 30")
    return conf


class TestKisFlowFoldersLoadUnchanged:
    """Unknown keys are warnings with a did-you-mean (KisFlow-Go ignores them), or strict errors."""

    def test_extra_keys_are_warnings_and_the_flows_run(
        self, kisflow_folder: Path, go_faas: dict[str, Any]
    ) -> None:
        loaded = load_config_dir(kisflow_folder)
        found = {(Path(w.path).name, w.key): w.message for w in loaded.warnings}
        assert set(found) == {
            ("flow-FlowName1.yml", "description"),
            ("flow-FlowName1.yml", "flows[0].parms"),
            ("func-FuncName1.yml", "optoin"),
            ("conn-ConnName1.yml", "timeout"),
        }
        parms = found[("flow-FlowName1.yml", "flows[0].parms")]
        assert parms.startswith("is not a key of flows[0] in a flow file (ignored, as KisFlow")
        assert "did you mean 'params'?" in parms
        assert "did you mean 'option'?" in found[("func-FuncName1.yml", "optoin")]
        assert "(ignored, as KisFlow-Go does)" in found[("conn-ConnName1.yml", "timeout")]
        assert all(isinstance(w, ConfigWarning) for w in loaded.warnings)
        assert loaded.conns["ConnName1"].params["args3"] == "value3"  # params are free-form
        assert "flowName1" in loaded.flows
        result = loaded.flows["flowName1"].run(
            ["This is Data1 from Test", "This is Data2 from Test", "This is Data3 from Test"]
        )
        assert result.ended is kf.RunEnd.COMPLETED

    def test_strict_makes_them_problems(
        self, kisflow_folder: Path, go_faas: dict[str, Any]
    ) -> None:
        found = problems(kisflow_folder, strict=True)
        assert sorted((name, key) for name, key, _ in found) == [
            ("conn-ConnName1.yml", "timeout"),
            ("flow-FlowName1.yml", "description"),
            ("flow-FlowName1.yml", "flows[0].parms"),
            ("func-FuncName1.yml", "optoin"),
        ]
        assert all("ignored" not in message for _, _, message in found)
        assert kf.pool.get_flows() == {}

    def test_a_flow_without_status_is_enabled_with_a_warning(self, tmp_path: Path) -> None:
        kf.faas("a", lambda flow: flow.commit_row_batch(flow.input()))
        write(tmp_path, "func.yml", "kistype: func\nfname: a\nfmode: Calculate\n")
        file = write(tmp_path, "flow.yml", "kistype: flow\nflow_name: F\nflows:\n  - fname: a\n")
        write(tmp_path, "flow2.yml", "kistype: flow\nflow_name: G\nstatus: 1\nflows: []\n")
        loaded = load_config_dir(tmp_path, check_faas=False)
        assert loaded.flows["F"].enabled
        assert loaded.flows["F"].run([1]).output == [1]
        (warning,) = loaded.warnings
        assert (warning.path, warning.key) == (str(file), "status")
        assert str(warning) == (
            f"{file}: status: is missing: kisflow enables the flow, KisFlow-Go would leave it "
            f"disabled; write status: 1 (or 0) to say which"
        )
        kf.pool.reset()
        found = problems(tmp_path, strict=True, check_faas=False)
        assert [(n, k) for n, k, _ in found] == [("flow.yml", "status")]

    def test_a_failed_load_keeps_its_warnings_as_notes(self, tmp_path: Path) -> None:
        write(tmp_path, "func.yml", "kistype: func\nfname: a\nfmod: Calculate\n")
        with pytest.raises(kf.ConfigError) as info:
            load_config_dir(tmp_path)
        (error,) = info.value.errors
        assert error.key == "fmode"
        assert str(error).endswith("fmode: is missing (the file gives fmod: a typo of fmode?)")
        (note,) = info.value.__notes__
        assert note.startswith(f"warning: {tmp_path / 'func.yml'}: fmod: is not a key of a func")
        assert "did you mean 'fmode'?" in note


class TestMessagesNameTheCause:
    """The known-keys hint lists every key, typos get a did-you-mean, nothing cascades."""

    @pytest.mark.parametrize(
        ("text", "key", "hint"),
        [
            (
                "kistype: func\nfname: a\nfmode: Verify\nretry_times: 3\n",
                "retry_times",
                "did you mean 'option.retry_times'? It belongs under option:.",
            ),
            (
                "kistype: func\nfname: a\nfmode: Verify\nsorce: {name: x}\n",
                "sorce",
                "did you mean 'source'?",
            ),
            (
                "kistype: flow\nflow_name: F\nstatus: 1\nflow:\n  - fname: a\n",
                "flow",
                "did you mean 'flows'?",
            ),
            (
                "kistype: flow\nflow_name: F\nstatus: 1\ncname: c\n",
                "cname",
                "it is a key of conn files: is kistype right?",
            ),
            (
                "kistype: func\nfname: a\nfmode: Verify\noption: {cnam: x}\n",
                "option.cnam",
                "did you mean 'cname'?",
            ),
        ],
    )
    def test_unknown_keys_get_a_hint(self, tmp_path: Path, text: str, key: str, hint: str) -> None:
        write(tmp_path, "x.yml", text)
        (warning,) = load_config_dir(tmp_path, check_faas=False).warnings
        assert warning.key == key
        assert hint in warning.message

    def test_the_known_keys_include_sections_and_kistype(self, tmp_path: Path) -> None:
        write(tmp_path, "func.yml", "kistype: func\nfname: a\nfmode: Verify\nzzz: 1\n")
        write(
            tmp_path,
            "flow.yml",
            "kistype: flow\nflow_name: F\nstatus: 1\nzzz: 1\nflows: [{fname: a}]\n",
        )
        loaded = load_config_dir(tmp_path, check_faas=False)
        warnings = {Path(w.path).name: w.message for w in loaded.warnings}
        assert warnings["func.yml"].endswith(
            "Known keys: fname, fmode, source, option, faas, kistype"
        )
        assert warnings["flow.yml"].endswith("Known keys: flow_name, status, flows, kistype")

    def test_a_kistype_typo_and_a_missing_kistype(self, tmp_path: Path) -> None:
        write(tmp_path, "a.yml", "kistype: fucn\nfname: a\nfmode: Verify\n")
        write(tmp_path, "b.yml", "cname: c\ntype: jsonl\n")
        found = {name: message for name, _, message in problems(tmp_path)}
        assert "did you mean 'func'?" in found["a.yml"]
        assert "its keys are those of a conn file (kistype: conn)" in found["b.yml"]

    def test_a_connector_type_typo_is_named_not_the_faas(self, tmp_path: Path) -> None:
        write(tmp_path, "func.yml", "kistype: func\nfname: s\nfmode: Save\noption: {cname: db}\n")
        write(tmp_path, "flow.yml", "kistype: flow\nflow_name: F\nstatus: 1\nflows: [{fname: s}]\n")
        write(
            tmp_path, "flow2.yml", "kistype: flow\nflow_name: G\nstatus: 1\nflows: [{fname: s}]\n"
        )
        write(tmp_path, "conn.yml", "kistype: conn\ncname: db\naddrs: x.db\ntype: sqlit\nkey: t\n")
        ((name, key, message),) = problems(tmp_path)  # one problem, though two flows use it
        assert (name, key) == ("conn.yml", "type")
        assert (
            "type 'sqlit', which is not a known connector type; did you mean 'sqlite'?" in message
        )
        assert "has no FaaS registered" not in message

    def test_an_unknown_connector_type_with_no_faas_says_so(self, tmp_path: Path) -> None:
        write(tmp_path, "func.yml", "kistype: func\nfname: s\nfmode: Save\noption: {cname: q}\n")
        write(tmp_path, "flow.yml", "kistype: flow\nflow_name: F\nstatus: 1\nflows: [{fname: s}]\n")
        write(tmp_path, "conn.yml", "kistype: conn\ncname: q\naddrs: h:9092\ntype: kafka\n")
        ((name, key, message),) = problems(tmp_path)
        assert (name, key) == ("flow.yml", "flows[0].fname")
        assert "has no FaaS registered (its connector type 'kafka' is not registered" in message

    @pytest.mark.parametrize(
        "broken",
        [
            "kistype: func\nfname: a\nfmode: Verfy\n",
            "kistype: func\nfname: a\nfmode: Verify\noption: {retry_times: -1}\n",
            "kistype: func\nfname: a\nfmode: Verify\nfmode: Save\n",
            "fname: a\nfmode: Verify\n",
        ],
        ids=["bad-fmode", "bad-option", "key-twice", "no-kistype"],
    )
    def test_a_problem_in_a_func_file_does_not_cascade(self, tmp_path: Path, broken: str) -> None:
        write(tmp_path, "func-a.yml", broken)
        write(tmp_path, "flow.yml", "kistype: flow\nflow_name: F\nstatus: 1\nflows: [{fname: a}]\n")
        found = problems(tmp_path)
        assert [name for name, _, _ in found] == ["func-a.yml"]
        assert all("no func file defines" not in message for _, _, message in found)

    def test_a_problem_in_a_conn_file_does_not_cascade(self, tmp_path: Path) -> None:
        write(tmp_path, "conn.yml", "kistype: conn\ncname: db\ntype: [sqlite]\n")
        write(tmp_path, "func.yml", "kistype: func\nfname: s\nfmode: Save\noption: {cname: db}\n")
        assert [(n, k) for n, k, _ in problems(tmp_path, check_faas=False)] == [
            ("conn.yml", "type")
        ]

    def test_a_missing_function_gets_a_did_you_mean(self, tmp_path: Path) -> None:
        write(tmp_path, "func.yml", "kistype: func\nfname: AvgScore\nfmode: Calculate\n")
        write(
            tmp_path,
            "flow.yml",
            "kistype: flow\nflow_name: F\nstatus: 1\nflows: [{fname: AvgScor}]\n",
        )
        ((_, key, message),) = problems(tmp_path, check_faas=False)
        assert key == "flows[0].fname"
        assert "which no func file defines; did you mean 'AvgScore'?" in message


def nested(levels: int) -> dict[str, Any]:
    """A mapping ``levels`` deep: {"a": {"a": ... {"a": 1}}}."""
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value  # type: ignore[no-any-return]


class TestExportLimits:
    """Export refuses what load would refuse, as a ConfigError, never RecursionError."""

    def flow(self, params: dict[str, Any]) -> kf.Flow:
        kf.faas("a", lambda flow: None)
        return kf.FlowBuilder("F").calculate("a", params).build()

    def test_params_450_deep_are_refused_on_export_and_on_load(self, tmp_path: Path) -> None:
        with pytest.raises(kf.ConfigError) as info:
            export_config(self.flow({"p": nested(450)}), tmp_path / "out")
        assert info.value.key == "flows[0].params"
        assert f"a config file nests at most {_yaml.MAX_DEPTH}" in str(info.value)
        assert not (tmp_path / "out").exists()
        kf.pool.reset()
        text = "{a: " * 450 + "1" + "}" * 450
        write(
            tmp_path / "conf",
            "flow.yml",
            f"kistype: flow\nflow_name: F\nflows:\n  - fname: a\n    params: {{p: {text}}}\n",
        )
        assert "nested more than 64 levels deep" in problems(tmp_path / "conf")[0][2]

    def test_params_at_the_limit_export_and_load_back(self, tmp_path: Path) -> None:
        params = nested(_yaml.MAX_DEPTH - 3)  # flow > flows > item > params: 64 in all
        flow = self.flow(params)
        export_config(flow, tmp_path)
        kf.pool.reset()
        kf.faas("a", lambda flow: None)
        loaded = load_config_dir(tmp_path)
        assert loaded.flows["F"].stages[0].flow_params == params
        kf.pool.reset()
        with pytest.raises(kf.ConfigError, match="nests 65 levels deep"):
            export_config(self.flow(nested(_yaml.MAX_DEPTH - 2)), tmp_path / "more")

    def test_default_params_and_conn_params(self, tmp_path: Path) -> None:
        kf.faas("a", lambda flow: None)
        option = kf.FuncOption(default_params=nested(_yaml.MAX_DEPTH - 1))
        flow = kf.FlowBuilder("F").calculate("a", option=option).build()
        with pytest.raises(kf.ConfigError) as info:
            export_config(flow, tmp_path)
        assert info.value.key == "option.default_params"
        conn = kf.ConnConfig(cname="c", type="jsonl", addrs=str(tmp_path / "x"), params=nested(64))
        flow = kf.FlowBuilder("G").save("s", conn=conn, option=kf.FuncOption(cname="c")).build()
        with pytest.raises(kf.ConfigError) as info:
            export_config(flow, tmp_path)
        assert info.value.key == "params"

    def test_params_that_contain_themselves(self, tmp_path: Path) -> None:
        loop: dict[str, Any] = {}
        loop["me"] = loop
        with pytest.raises(kf.ConfigError, match="contains itself"):
            export_config(self.flow({"p": loop}), tmp_path)

    def test_a_shared_value_is_measured_once(self) -> None:
        shared: list[Any] = [1]
        for _ in range(60):
            shared = [shared, shared]  # 2**60 paths, 61 levels
        assert _yaml.depth(shared) == 61

    @pytest.mark.parametrize("value", [10**5000, object()], ids=["5001-digit-int", "an-object"])
    def test_values_yaml_cannot_hold(self, tmp_path: Path, value: Any) -> None:
        with pytest.raises(kf.ConfigError, match="a value cannot be written as YAML"):
            export_config(self.flow({"p": value}), tmp_path)
        assert list(tmp_path.iterdir()) == []
