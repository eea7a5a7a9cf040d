"""The API a FaaS sees: ``FlowAPI``, and ``RunView``, the flow handed to a FaaS in a run.

``FlowAPI`` holds every method a FaaS calls (``input``, ``commit_row*``, ``next``,
``dead_letter``, params, metadata, cache, connector and KisFlow's getters), written
against a flow ``Definition`` and the current call. ``kisflow.Flow`` derives from it;
outside a run there is no current call. ``RunView`` is the flow handed to a FaaS in a
run; a run (``kisflow._run.Run``) is its own view, so a run makes one object, not two.
The view's methods read the current call through ``RunControl`` (the stage, its input,
the context; ``ask`` for actions, ``reject`` for dead letters); the run is the current
stage's result buffer (a ``list``: ``commit_row`` is ``list.append``) and cuts ``_run``
when it ends.
``isinstance(view, Flow)`` holds because ``kisflow.flow`` registers ``RunView`` as a
virtual subclass of ``Flow``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from kisflow.actions import Action
from kisflow.errors import ConnectorError, RunError
from kisflow.state import KeyedState, stage_key
from kisflow.windows import Window
from kisflow.windows import current as current_window

if TYPE_CHECKING:
    from kisflow._definition import Definition, Function
    from kisflow.config import ConnConfig, FlowConfig, FuncConfig
    from kisflow.connector import Connector
    from kisflow.stage import Stage

__all__ = ["CommitRow", "CommitRowBatch", "FlowAPI", "RunControl", "RunView"]


class CommitRow(Protocol):
    """``flow.commit_row(row)``: commit one row to the current stage's result."""

    def __call__(self, row: Any, /) -> None: ...


class CommitRowBatch(Protocol):
    """``flow.commit_row_batch(rows, copy=True)``: commit a batch (an iterable of rows)."""

    def __call__(self, rows: Iterable[Any], /, copy: bool = True) -> None: ...


class RunControl(Protocol):
    """What a view asks of the run it belongs to."""

    stage_input: list[Any]
    """The current stage's input rows (without rows that failed conversion)."""
    ctx: Any
    """The run's ``ctx``."""

    def current_stage(self) -> Stage:
        """The stage being called."""

    def position(self) -> int:
        """The index of the stage being called."""

    def ask(self, action: Action) -> None:
        """Record an action the FaaS asked for (combined with earlier ones)."""

    def reject(self, row: Any, reason: str | BaseException) -> None:
        """A FaaS rejects ``row`` (``flow.dead_letter``)."""

    def commit_batch(self, rows: Iterable[Any], copy: bool = True) -> None:
        """The current stage's ``commit_row_batch``."""

    def hold(self, lock: Any) -> None:
        """Take ``lock`` until the current stage call returns (a stage's state)."""


def _ttl_seconds(ttl: float | timedelta | None) -> float:
    if ttl is None:
        return math.inf
    return ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)


class FlowAPI(metaclass=abc.ABCMeta):
    """The FaaS-facing flow API over a ``Definition`` and, inside a run, the current call.

    ``commit_row(row)`` and ``commit_row_batch(rows, copy=True)`` are attributes, not
    methods: inside a FaaS ``commit_row`` is ``list.append`` of the stage's result (the
    run itself), so committing a row costs one C call. The attributes are held by each
    subclass (``kisflow.Flow``, ``kisflow._run.Run``); this class adds no instance layout,
    so a run may also be a ``list``.
    """

    __slots__ = ()

    _d: Definition
    _run: RunControl | None
    """The run of the current call; None outside a run."""

    commit_row: CommitRow
    """Commit one row to the current stage's result (outside a run: to the next source)."""
    commit_row_batch: CommitRowBatch
    """Commit many rows at once (KisFlow's ``CommitRowBatch``): ``commit_row_batch(rows,
    copy=True)``; ``copy=False`` hands a list over without copying it (see concepts)."""

    # -- identity -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The flow name."""
        return self._d.config.flow_name

    @property
    def id(self) -> str:
        """This flow's id (a fork gets a new one)."""
        return self._d.id

    @property
    def config(self) -> FlowConfig:
        """The flow's config, including the functions ``link`` recorded."""
        return self._d.config

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The stages in execution (topological) order."""
        return self._d.stages

    def get_name(self) -> str:
        """KisFlow's ``GetName``."""
        return self._d.config.flow_name

    def get_id(self) -> str:
        """KisFlow's ``GetId``."""
        return self._d.id

    def get_config(self) -> FlowConfig:
        """KisFlow's ``GetConfig``."""
        return self._d.config

    # -- the current call (valid inside a run) --------------------------------------------

    def _control(self) -> RunControl:
        run = self._run
        if run is None:
            raise RunError(
                f"flow {self.name!r}: this call is only valid inside a FaaS during a run",
                flow=self.name,
            )
        return run

    def _current(self) -> Stage:
        return self._control().current_stage()

    def input(self) -> list[Any]:
        """The current stage's input rows (the previous stage's result layer)."""
        run = self._run
        if run is None:
            run = self._control()
        return run.stage_input

    def next(self, *actions: Action) -> None:
        """Ask for actions after the current stage returns (see ``kisflow.actions``)."""
        run = self._run
        if run is None:
            run = self._control()
        if len(actions) == 1 and type(actions[0]) is Action:  # the common call: no loops
            run.ask(actions[0])
            return
        for action in actions:
            if type(action) is not Action:
                raise RunError(
                    f"flow {self.name!r}: next() takes kisflow.actions values, got {action!r}",
                    flow=self.name,
                    stage=run.current_stage().name,
                )
        for action in actions:
            run.ask(action)

    def dead_letter(self, row: Any, reason: str | BaseException = "rejected") -> None:
        """Reject ``row`` (a Verify stage's validation): it goes to the dead-letter sink.

        Rows rejected by an attempt that then fails and is retried are discarded with it.

        Raises:
            RowRejectedError: the stage has no dead-letter sink (nothing is lost silently).
        """
        self._control().reject(row, reason)

    def state(self) -> KeyedState:
        """This stage's keyed state: a mapping from key to a value that can be saved.

        It belongs to the flow definition (shared by its runs, saved with a stream's
        checkpoint) and is keyed by the stage's position and name. The calling stage call
        holds it until it returns, so concurrent runs apply their changes one call after
        another. See docs/state.md.
        """
        run = self._control()
        part = self._d.state.keyed(stage_key(run.position(), run.current_stage().name))
        run.hold(part.lock)
        return part

    def window(self) -> Window:
        """The window this call of a window FaaS is for: its key, start and end.

        Raises:
            RunError: the stage's FaaS was registered without ``window=``.
        """
        win = current_window()
        if win is None:
            stage = self._current()
            raise RunError(
                f"flow {self.name!r}: stage {stage.name!r} called flow.window(), but its "
                f"FaaS was registered without window= (see kisflow.windows)",
                flow=self.name,
                stage=stage.name,
            )
        return win

    def get_this_function(self) -> Function:
        """The function being run (KisFlow's Function: the stage, with its metadata)."""
        run = self._control()
        return self._d.functions[run.position()]

    def get_this_func_conf(self) -> FuncConfig:
        """The config of the stage being run."""
        return self._current().config

    def get_context(self) -> Any:
        """The ``ctx`` given to ``run`` (None when none was given)."""
        return self._control().ctx

    def get_func_config_by_name(self, name: str) -> FuncConfig | None:
        """The config of the function ``name`` in this flow, or None."""
        for stage in self._d.stages:
            if stage.name == name:
                return stage.config
        return None

    def get_func_param(self, key: str, default: Any = "") -> Any:
        """A param of the current stage ("" when absent, as KisFlow)."""
        return self._current().params.get(key, default)

    def get_func_param_all(self) -> dict[str, Any]:
        """All params of the current stage (defaults overridden by the flow's)."""
        return dict(self._current().params)

    def get_func_params_all_funcs(self) -> dict[str, dict[str, Any]]:
        """Params of every stage, by function name (by stage id where a name repeats)."""
        out: dict[str, dict[str, Any]] = {}
        for stage in self._d.stages:
            key = stage.name if stage.name not in out else stage.id
            out[key] = dict(stage.params)
        return out

    def get_connector(self) -> Connector:
        """The connector of the current stage.

        Raises:
            ConnectorError: the stage has no connector.
        """
        stage = self._current()
        if stage.connector is None:
            raise ConnectorError(
                f"flow {self.name!r} stage {stage.name!r} has no connector; "
                f"set option.cname and bind a ConnConfig",
                flow=self.name,
                stage=stage.name,
                retryable=False,
            )
        return stage.connector

    def get_conn_conf(self) -> ConnConfig:
        """The connector config of the current stage."""
        return self.get_connector().config

    # -- metadata and cache (shared by every run of this flow) --------------------------

    def get_metadata(self, key: str) -> Any:
        """A value stored on this flow, or None (thread-safe)."""
        with self._d.metadata_lock:
            return self._d.metadata.get(key)

    def set_metadata(self, key: str, value: Any) -> None:
        """Store a value on this flow; it outlives runs (thread-safe)."""
        with self._d.metadata_lock:
            self._d.metadata[key] = value

    def get_cache(self, key: str) -> Any:
        """A cached value, or None once missing or expired (thread-safe)."""
        with self._d.cache_lock:
            entry = self._d.cache.get(key)
        return None if entry is None else entry[0]

    def set_cache(self, key: str, value: Any, ttl: float | timedelta | None = None) -> None:
        """Cache a value for ``ttl`` seconds (or a timedelta); None keeps it until replaced."""
        seconds = _ttl_seconds(ttl)
        if seconds <= 0:
            raise RunError(
                f"flow {self.name!r}: cache ttl must be positive, got {ttl!r}", flow=self.name
            )
        with self._d.cache_lock:
            self._d.cache[key] = (value, seconds)


class RunView(FlowAPI):
    """The ``flow`` a FaaS receives: the definition, bound to one run.

    In a run ``commit_row`` is ``list.append`` on the run, which is the current stage's
    result buffer (one C call per committed row), and ``commit_row_batch`` its own
    ``commit_batch``; everything else the view reads from the run when the FaaS asks.
    ``kisflow._run.Run`` derives from it: the run is its own view, and sets ``_d`` and
    ``_run`` (itself, until it ends).
    """

    __slots__ = ()
