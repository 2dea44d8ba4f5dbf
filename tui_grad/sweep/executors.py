"""Where a sweep's runs execute: in this process, or on dask.distributed.

Every executor calls the same ``runner.run_task(values, steps)``, so a row does not depend on
where or in what order its run executed. Dask is imported inside ``run_on_dask`` only.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from tui_grad.config import ConfigError
from tui_grad.i18n import tr
from tui_grad.sweep.runner import run_task
from tui_grad.sweep.spec import Run

OnResult = Callable[[Run, dict[str, Any]], None]
POLL_SECONDS = 0.05  # how often the main loop looks at finished runs, the stop flag, the bar
SCHEDULER_ADDRESS = re.compile(r"^(tcp|tls|ws|wss|inproc)://[^\s:/]+(:\d{1,5})?$")
CONNECT_SECONDS = 10


class Stop:
    """The stop flag a SIGINT/SIGTERM handler sets; executors look at it between runs."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum: int, frame: object) -> None:
        self.signal = signum


def run_here(items: list[tuple[Run, dict[str, Any]]], steps: int, on_result: OnResult, stop: Stop,
             idle: Callable[[], None] = lambda: None, *, task: Callable = run_task) -> None:
    """Run every item in this process, one after the other (``--workers 0``, and the tests'
    reference for what every other executor must reproduce). ``task(values, steps)``: what
    each item runs (a sweep's run by default; coord-check passes its own)."""
    for run, values in items:
        if stop.signal is not None:
            return
        on_result(run, task(values, steps))
        idle()


def run_on_dask(items: list[tuple[Run, dict[str, Any]]], steps: int, on_result: OnResult, stop: Stop,
                idle: Callable[[], None] = lambda: None, *, workers: int | None = None,
                scheduler: str | None = None, task: Callable = run_task) -> None:
    """Run every item as a Dask task: on a LocalCluster of ``workers`` one-thread processes, or
    on the cluster behind ``scheduler``. Results are handed to ``on_result`` as they finish; a
    lost worker's runs are redone by Dask, and each result arrives once."""
    from dask.distributed import as_completed

    with _client(workers, scheduler) as client:
        token = uuid.uuid4().hex[:8]
        keys = [f"tui-grad-run-{token}-{i}" for i in range(len(items))]
        futures = client.map(task, [values for _, values in items], [steps] * len(items),
                             key=keys, pure=False)
        runs = {future.key: run for future, (run, _) in zip(futures, items, strict=True)}
        finished = as_completed(futures)
        del futures  # a result's memory is freed on the workers once it is written
        try:
            while not finished.is_empty() and stop.signal is None:
                if not finished.has_ready():
                    time.sleep(POLL_SECONDS)
                    idle()
                    continue
                for future in finished.next_batch(block=False):
                    on_result(runs.pop(future.key), future.result())
                    future.release()
                idle()
        finally:
            with contextlib.suppress(Exception):
                client.cancel(list(finished.futures))
            finished.clear()


@contextlib.contextmanager
def _client(workers: int | None, scheduler: str | None) -> Iterator[Any]:
    """A Client of a fresh LocalCluster (closed with it) or of the given scheduler."""
    from dask.distributed import Client, LocalCluster

    for name in ("distributed", "tornado", "bokeh"):
        logging.getLogger(name).setLevel(logging.ERROR)  # a closing cluster's chatter is not news
    if scheduler is not None:
        if not SCHEDULER_ADDRESS.match(scheduler):
            raise ConfigError(tr("must look like tcp://HOST:PORT (got {value})", value=repr(scheduler)),
                              path="--scheduler")
        try:
            client = Client(scheduler, timeout=CONNECT_SECONDS)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(tr("cannot reach a Dask scheduler at {address} within {seconds} s ({reason})",
                                 address=scheduler, seconds=CONNECT_SECONDS, reason=type(exc).__name__),
                              path="--scheduler") from None
        with client:
            yield client
        return
    # The workers ignore SIGINT (an ignored signal stays ignored across exec): Ctrl-C in a
    # terminal reaches the whole process group, and this process, not the workers, decides
    # how to stop. Closing the cluster ends them.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR)
    finally:
        signal.signal(signal.SIGINT, previous)
    with cluster, Client(cluster) as client:
        yield client
