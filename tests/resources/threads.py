"""Thread helpers shared by the concurrency tests."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_threads(count: int, target: Callable[[int], None]) -> list[BaseException]:
    """Start ``count`` threads released together by a barrier; return what they raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def body(i: int) -> None:
        barrier.wait()
        try:
            target(i)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    return errors
