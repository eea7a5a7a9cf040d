"""File connectors stay inside their config folder unless the caller allows the place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import kisflow as kf
from kisflow.configfile import export_config, load_config_dir


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def folder_with(tmp_path: Path, addrs: str, conn_type: str = "jsonl") -> Path:
    """``tmp_path/conf``: a flow saving its rows through one file connector at ``addrs``."""
    conf = tmp_path / "conf"
    write(conf, "func.yml", "kistype: func\nfname: s\nfmode: Save\noption:\n  cname: store\n")
    write(conf, "flow.yml", "kistype: flow\nflow_name: F\nstatus: 1\nflows:\n  - fname: s\n")
    write(
        conf,
        "conn/conn.yml",
        f"kistype: conn\ncname: store\naddrs: {addrs!r}\ntype: {conn_type}\nkey: rows\n",
    )
    return conf


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own, so ``~`` never means the real one."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


class TestInsideTheFolder:
    """Relative paths resolve from the conn file's folder and must stay in the config folder."""

    @pytest.mark.parametrize("conn_type", ["jsonl", "sqlite"])
    @pytest.mark.parametrize(
        "addrs",
        ["../../x.jsonl", "../../../x.jsonl", "~/.bashrc", "ABSOLUTE", "../../conf2/x.jsonl"],
    )
    def test_a_path_that_leaves_is_refused(
        self, tmp_path: Path, home: Path, addrs: str, conn_type: str
    ) -> None:
        addrs = str(tmp_path / "elsewhere.db") if addrs == "ABSOLUTE" else addrs
        conf = folder_with(tmp_path, addrs, conn_type)
        with pytest.raises(kf.ConfigError) as info:
            load_config_dir(conf)
        (error,) = info.value.errors
        assert (Path(error.path or "").name, error.key) == ("conn.yml", "addrs")
        assert f"outside the config folder {conf.resolve()}" in str(error)
        assert "--allow-path" in str(error)
        assert kf.pool.get_flows() == {}
        assert list(home.iterdir()) == []

    def test_a_link_inside_the_folder_that_points_out_is_refused(self, tmp_path: Path) -> None:
        conf = folder_with(tmp_path, "data/rows.jsonl")
        (tmp_path / "outside").mkdir()
        (conf / "conn" / "data").symlink_to(tmp_path / "outside")
        with pytest.raises(kf.ConfigError, match="outside the config folder") as info:
            load_config_dir(conf)
        assert str(tmp_path / "outside" / "rows.jsonl") in str(info.value)

    @pytest.mark.parametrize(
        ("addrs", "where"),
        [
            ("rows.jsonl", "conn/rows.jsonl"),
            ("../rows.jsonl", "rows.jsonl"),  # up from conn/, still inside conf/
            ("sub/../deeper/rows.jsonl", "conn/deeper/rows.jsonl"),
        ],
    )
    def test_a_path_inside_loads_and_runs_there(
        self, tmp_path: Path, addrs: str, where: str
    ) -> None:
        conf = folder_with(tmp_path, addrs)
        (conf / "conn" / "deeper").mkdir(exist_ok=True)
        loaded = load_config_dir(conf)
        assert loaded.conns["store"].addrs == str((conf / where).resolve())
        loaded.flows["F"].run([{"x": 1}])
        assert (conf / where).read_text() == '{"x": 1}\n'

    def test_an_absolute_path_inside_the_folder_loads(self, tmp_path: Path) -> None:
        conf = folder_with(tmp_path, str(tmp_path / "conf" / "rows.jsonl"))
        assert load_config_dir(conf).conns["store"].addrs == str((conf / "rows.jsonl").resolve())

    def test_types_that_take_no_file_are_left_alone(self, tmp_path: Path) -> None:
        kf.faas("s", lambda flow: None)
        conf = folder_with(tmp_path, "/etc/redis:6379", conn_type="redis")
        assert load_config_dir(conf).conns["store"].addrs == "/etc/redis:6379"


class TestAllowPaths:
    """The caller may allow places outside the folder: folders (and what is in them) or files."""

    def test_an_allowed_folder(self, tmp_path: Path) -> None:
        data = tmp_path / "data"
        data.mkdir()
        conf = folder_with(tmp_path, "../../data/rows.jsonl")
        loaded = load_config_dir(conf, allow_paths=[data])
        assert loaded.conns["store"].addrs == str((data / "rows.jsonl").resolve())
        loaded.flows["F"].run([{"x": 2}])
        assert (data / "rows.jsonl").read_text() == '{"x": 2}\n'

    def test_an_allowed_home_path(self, tmp_path: Path, home: Path) -> None:
        conf = folder_with(tmp_path, "~/kisflow/rows.jsonl")
        loaded = load_config_dir(conf, allow_paths=["~/kisflow"])
        assert loaded.conns["store"].addrs == str((home / "kisflow" / "rows.jsonl").resolve())

    def test_another_place_is_still_refused(self, tmp_path: Path) -> None:
        (tmp_path / "data").mkdir()
        conf = folder_with(tmp_path, "../../other/rows.jsonl")
        with pytest.raises(kf.ConfigError) as info:
            load_config_dir(conf, allow_paths=[tmp_path / "data"])
        assert f"and the allowed places ({(tmp_path / 'data').resolve()})" in str(info.value)

    def test_a_sibling_with_a_common_prefix_is_not_inside(self, tmp_path: Path) -> None:
        (tmp_path / "data").mkdir()
        conf = folder_with(tmp_path, "../../data2/rows.jsonl")
        with pytest.raises(kf.ConfigError, match="outside the config folder"):
            load_config_dir(conf, allow_paths=[tmp_path / "data"])


class TestExportedPaths:
    """Export writes a file connector's path relative to the exported folder where it can."""

    def build(self, addrs: Path) -> kf.Flow:
        conn = kf.ConnConfig(cname="store", addrs=str(addrs), type="jsonl", key="rows")
        return kf.FlowBuilder("F").save("s", conn=conn, option=kf.FuncOption(cname="store")).build()

    def test_inside_the_export_relative_and_loads_from_anywhere(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        out = tmp_path / "out"
        flow = self.build(out / "data" / "rows.jsonl")
        export_config(flow, out)
        assert "addrs: data/rows.jsonl\n" in (out / "conn-store.yaml").read_text()
        kf.pool.reset()
        monkeypatch.chdir(tmp_path.parent)
        loaded = load_config_dir(out)
        assert loaded.conns["store"].addrs == str((out / "data" / "rows.jsonl").resolve())

    def test_outside_the_export_absolute(self, tmp_path: Path) -> None:
        out = tmp_path / "out"
        elsewhere = tmp_path / "elsewhere" / "rows.jsonl"
        export_config(self.build(elsewhere), out)
        assert f"addrs: {elsewhere}\n" in (out / "conn-store.yaml").read_text()
        kf.pool.reset()
        with pytest.raises(kf.ConfigError, match="outside the config folder"):
            load_config_dir(out)
        kf.pool.reset()
        assert load_config_dir(out, allow_paths=[elsewhere.parent]).conns["store"].addrs == str(
            elsewhere.resolve()
        )

    def test_loaded_then_exported_into_the_same_folder_is_unchanged(self, tmp_path: Path) -> None:
        conf = folder_with(tmp_path, "rows.jsonl")
        loaded = load_config_dir(conf)
        export_config(loaded.flows["F"], conf / "conn")
        assert "addrs: rows.jsonl\n" in (conf / "conn" / "conn-store.yaml").read_text()
        assert os.path.isabs(loaded.conns["store"].addrs)
