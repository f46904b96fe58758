"""Run a function over items in worker processes: the suite's ``jobs`` and the sweep's ``--workers``.

Workers are spawned (no forked torch, CUDA or SQLAlchemy state) and each takes the next item as
it finishes the last, so at most ``jobs`` items run at once. Results come back as they finish.
A worker that dies outright (killed, out of memory) costs only its own item, which is reported
with the exit code, and is replaced. If the caller is interrupted (Ctrl+C, a kill), it hands out
nothing more and terminates every worker at once: SIGTERM becomes an exception in the worker
(Lightning's handler during training, ours otherwise), so a run in progress is marked KILLED;
a worker still alive after ``STOP_GRACE_S`` is killed. Workers ignore Ctrl+C themselves (the
terminal sends it to all of them; only the caller decides), and die with the caller even when it
is killed outright (``PR_SET_PDEATHSIG`` on Linux, else a watchdog thread): no orphans.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
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


STOP_GRACE_S = 10.0  # how long an interrupted worker gets to mark its run KILLED before it is killed
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _terminated(signum, frame):
    raise SystemExit(128 + signum)  # unwinds the run in progress, which records itself KILLED


def _die_with_parent(parent: int) -> None:
    """End this worker when ``parent`` ends, however it ends (kill -9 included)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # it died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()


def _serve(fn: Callable, conn: Connection, parent: int) -> None:
    """Worker loop: receive (index, item), send back (index, ok, result or traceback); None ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminated)
    _die_with_parent(parent)
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
        w = _Worker(ctx.Process(target=_serve, args=(fn, child, os.getpid())), parent)
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
        todo.clear()
        for w in workers:
            if w.process.is_alive():
                w.process.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for w in workers:
            w.process.join(max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
        raise
