"""One overlapped pipeline for folders, videos and the camera, built on ``Segmenter``'s three stages.

Loader threads read and :meth:`~lvunet_runtime.segmenter.Segmenter.prepare` items ahead (bounded), the
calling thread only runs the model, writer threads :meth:`~lvunet_runtime.segmenter.Segmenter.finish`
them and do whatever the caller asks (write files, draw an overlay). Results come back in input order;
queues hold a few items each, so memory stays flat however long the input.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from lvunet_runtime.errors import LVUNetRuntimeError
from lvunet_runtime.segmenter import Prepared, Segmenter

Item = TypeVar("Item")
Result = TypeVar("Result")
# Per-item faults that skip the item; anything else stops the run.
ITEM_FAULTS = (LVUNetRuntimeError, OSError, ValueError)


@dataclass
class Outcome(Generic[Item, Result]):
    """What became of one item: its result, or the error that skipped it."""

    item: Item
    result: Result | None = None
    error: Exception | None = None


def _failed(error: Exception) -> Future:
    future: Future = Future()
    future.set_exception(error)
    return future


def run_pipeline(
    segmenter: Segmenter,
    items: Iterable[Item],
    load: Callable[[Item], Prepared],
    finish: Callable[[Item, Prepared, np.ndarray], Result],
    *,
    workers: int = 1,
    batch_size: int = 1,
    live: bool = False,
) -> Iterator[Outcome[Item, Result]]:
    """Run ``items`` through load (threads) -> model (this thread) -> finish (threads), in order.

    Args:
        segmenter: the model.
        items: anything ``load`` understands; iterated lazily on this thread (a video's frames).
        load: item -> ``Prepared`` (decode + ``segmenter.prepare``); errors in ``ITEM_FAULTS`` skip it.
        finish: (item, prepared, model output (h, w)) -> result; errors in ``ITEM_FAULTS`` skip it.
        workers: loader threads and writer threads (each).
        batch_size: images per model call.
        live: a live source (a camera): never wait for a next item before running the current one,
            and hand each result back as soon as it is finished (latency over throughput).
    """
    batch_size, workers = max(1, batch_size), max(1, workers)
    depth = 1 if live else batch_size + workers  # items loaded ahead, and finished behind
    source = iter(items)
    with ThreadPoolExecutor(workers) as loaders, ThreadPoolExecutor(workers) as writers:
        loading: deque[tuple[Item, Future]] = deque()
        finishing: deque[tuple[Item, Future]] = deque()

        def refill() -> None:
            while len(loading) < depth:
                item = next(source, _END)
                if item is _END:
                    return
                loading.append((item, loaders.submit(load, item)))

        refill()
        while loading:
            taken: list[tuple[Item, Prepared | Exception]] = []
            while loading and sum(not isinstance(p, Exception) for _, p in taken) < batch_size:
                item, future = loading.popleft()
                try:
                    taken.append((item, future.result()))
                except ITEM_FAULTS as exc:
                    taken.append((item, exc))
                if not live:  # load the next items while the model runs
                    refill()
            ready = [p for _, p in taken if not isinstance(p, Exception)]
            outputs = iter(segmenter.run_prepared(ready) if ready else [])
            for item, prepared in taken:  # in input order, failures included
                if isinstance(prepared, Exception):
                    finishing.append((item, _failed(prepared)))
                else:
                    finishing.append((item, writers.submit(finish, item, prepared, next(outputs))))
            if live:
                yield _outcome(*finishing.popleft())
                refill()
            while len(finishing) > depth:
                yield _outcome(*finishing.popleft())
        while finishing:
            yield _outcome(*finishing.popleft())


_END = object()


def _outcome(item, future: Future) -> Outcome:
    try:
        return Outcome(item, result=future.result())
    except ITEM_FAULTS as exc:
        return Outcome(item, error=exc)
