"""Run a function over items in worker processes: the suite's ``jobs`` and the sweep's ``--workers``.

Workers are spawned (no forked torch, CUDA or SQLAlchemy state) and each takes the next item as
it finishes the last, so at most ``jobs`` items run at once. Results come back as they finish.
A worker that dies outright (killed, out of memory) costs only its own item, which is reported
with the exit code, and is replaced. If the caller is interrupted (Ctrl+C, a kill), every worker
is terminated: Lightning turns SIGTERM into an exception, so a run in progress is marked KILLED.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any


@dataclass
class Outcome:
    """One item's end: its ``result``, or an ``error`` (the exception's traceback, or how the worker died)."""

    index: int  # position of the item in the input
    item: Any
    result: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _serve(fn: Callable, conn: Connection) -> None:
    """Worker loop: receive (index, item), send back (index, ok, result or traceback); None ends it."""
    while (task := conn.recv()) is not None:
        index, item = task
        try:
            conn.send((index, True, fn(item)))
        except Exception:  # the caller decides what a failed item means; the worker goes on
            conn.send((index, False, traceback.format_exc()))
    conn.close()


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    index: int | None = None  # the item it is working on


def run_in_processes(fn: Callable[[Any], Any], items: list, jobs: int) -> Iterator[Outcome]:
    """Yield an ``Outcome`` per item, in the order they finish; ``fn`` must be a module-level function.

    Use it in a ``with contextlib.closing(...)`` block or a plain ``for`` loop: leaving the loop
    early (an exception in its body) terminates the workers.
    """
    ctx = multiprocessing.get_context("spawn")
    todo = list(enumerate(items))[::-1]  # popped from the end: first item first
    workers: list[_Worker] = []

    def next_item(w: _Worker) -> None:
        w.index = None
        if todo:
            w.index, item = todo.pop()
            w.conn.send((w.index, item))

    def start() -> None:
        parent, child = ctx.Pipe()
        w = _Worker(ctx.Process(target=_serve, args=(fn, child)), parent)
        w.process.start()
        child.close()  # the worker holds it now: its death reads as EOF here
        workers.append(w)
        next_item(w)

    def died(w: _Worker) -> Outcome:
        w.process.join()
        return Outcome(w.index, items[w.index], error=f"worker process died (exit code {w.process.exitcode})")

    try:
        for _ in range(min(jobs, len(items))):
            start()
        while busy := [w for w in workers if w.index is not None]:
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for w in busy:
                if w.conn.poll():  # a result, or end-of-file when the worker died
                    try:
                        index, ok, payload = w.conn.recv()
                        outcome = Outcome(index, items[index], payload if ok else None, None if ok else payload)
                    except EOFError:
                        outcome = died(w)
                elif not w.process.is_alive():
                    outcome = died(w)
                else:
                    continue
                yield outcome
                if w.process.is_alive():
                    next_item(w)
                else:
                    w.index = None
                    if todo:
                        start()  # a replacement for the dead worker
        for w in workers:
            if w.process.is_alive():
                w.conn.send(None)
            w.process.join()
    except BaseException:  # Ctrl+C, a kill of this process, or the caller left the loop: stop the workers too
        for w in workers:
            if w.process.is_alive():
                w.process.terminate()
        for w in workers:
            w.process.join()
        raise
