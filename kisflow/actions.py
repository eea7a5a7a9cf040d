"""Actions: what a FaaS asks the flow to do after it returns (``flow.next(*actions)``).

=================  ==============================================================
``data_reuse``     this stage's result is its *input* (its own commits are dropped)
``force_entry_next``  go on even if this stage committed nothing (rows it did commit
                   are kept, unlike KisFlow's Go code)
``jump_func(name)``   continue at the named stage, whose input is the result of the
                   stage before it; bounded by the flow's step limit
``abort``          stop the flow after this stage, without error
=================  ==============================================================

Actions given in one stage combine; they reset before the next stage. Adding an action
is one field here (a flag, or a value where the later one wins when actions combine)
and one branch in ``kisflow._run.Run._apply``, which decides what the stage's result is
and where the run goes next.
"""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["Action", "abort", "data_reuse", "force_entry_next", "jump_func"]


@attrs.frozen
class Action:
    """A set of requests to the flow; several combine with ``|``."""

    data_reuse: bool = False
    force_entry_next: bool = False
    jump_func: str | None = None
    abort: bool = False

    def __or__(self, other: Action) -> Action:
        """Both requests: flags are or-ed, a value (``jump_func``) is the later one's."""
        merged: dict[str, Any] = {}
        for field in _FIELDS:
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            if isinstance(mine, bool):
                merged[field.name] = mine or theirs
            else:
                merged[field.name] = theirs if theirs is not None else mine
        return Action(**merged)


_FIELDS = attrs.fields(Action)


data_reuse = Action(data_reuse=True)
"""Make this stage's result its own input layer."""

force_entry_next = Action(force_entry_next=True)
"""Go on to the next stage even when this one committed no rows."""

abort = Action(abort=True)
"""Stop the flow after this stage, without error."""


def jump_func(name: str) -> Action:
    """Continue at stage ``name`` (a function name, or a stage id where names repeat)."""
    return Action(jump_func=name)
