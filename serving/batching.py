"""Batching that adds no wait: a request runs at once when a slot is free, and requests that arrive
while every slot is busy go together in the next batch.

`@serve.batch` forms a batch as soon as the first request arrives and then waits up to
`batch_wait_timeout_s` for more, before a slot is free: with no wait its batches are single
requests, with a wait every request pays it, busy or not. Searches need batches exactly when the
replica is busy (measured: `benchmarks/serve_latency.py`), so the retriever service batches here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
_release: ContextVar[Callable[[], None] | None] = ContextVar("ragline_batch_release", default=None)


def release_slot() -> None:
    """Called from inside a batch: its slot may start the next batch now, while this one finishes.
    A pipeline: the retriever service releases once its batch's query vectors are back, so the
    next batch is embedded while this one is searched. No-op outside a batch."""
    release = _release.get()
    if release is not None:
        release()


class Batcher(Generic[T, R]):
    """`await batcher.submit(item)` → FN's result for that item. FN takes a list of items and
    returns one result per item, an exception instance to fail that item alone; an exception it
    raises fails its whole batch. At most SLOTS batches run at once (until they `release_slot()`),
    each of at most MAX_SIZE."""

    def __init__(
        self, fn: Callable[[list[T]], Awaitable[list[R | Exception]]], max_size: int = 32, slots: int = 2
    ):
        if max_size < 1 or slots < 1:
            raise ValueError("max_size and slots must be >= 1")
        self.fn, self.max_size, self.slots = fn, max_size, slots
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._running < self.slots:
            self._running += 1
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch, self._queue = self._queue[: self.max_size], self._queue[self.max_size :]
                freed = asyncio.Event()
                task = loop.create_task(self._run(batch, freed))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                await freed.wait()
        finally:
            self._running -= 1

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]], freed: asyncio.Event) -> None:
        _release.set(freed.set)  # this task's own context: release_slot() inside FN finds it
        try:
            try:
                results = await self.fn([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"batch function gave {len(results)} results for {len(batch)} items")
            except Exception as exc:
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # the caller went away (cancelled)
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        finally:
            freed.set()
