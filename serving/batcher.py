"""Adaptive micro-batching: concurrent requests for one variant become one model call.

A request that finds nobody else queued is dispatched at once; when others are queued, the batch grows until
``max_size`` records or ``max_wait`` seconds. The model runs in a dedicated thread, off the event loop. Each request
names the model that validated its records, so records are always scored by that model: a batch collected across a
version swap becomes one call per model. Each caller also gets how long the model call of its batch took (in the
model thread: time spent waiting for the thread behind another variant's call is not counted). Records submitted with
``explain`` are also explained in that thread, right after the call that scored them, by the same model
(``explain_fn``: one call for every such record of the batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

BatchFn = Callable[[list[dict[str, Any]], Any], tuple[np.ndarray, Any]]
ExplainFn = Callable[[list[dict[str, Any]], Any], list[dict[str, Any]]]
Item = tuple[list[dict[str, Any]], Any, asyncio.Future, list[bool] | None]
Result = tuple[np.ndarray, Any, float, list[dict[str, Any] | None] | None]


class MicroBatcher:
    """Coalesces ``submit`` calls into ``fn(records, model)`` calls and fans the results back out."""

    def __init__(
        self,
        fn: BatchFn,
        max_size: int,
        max_wait: float,
        executor: ThreadPoolExecutor,
        on_batch: Callable[[int], None] | None = None,
        max_queued: int | None = None,
        explain_fn: ExplainFn | None = None,
    ) -> None:
        self.fn = fn
        self.explain_fn = explain_fn
        self.max_queued = max_queued  # records waiting for the model at most (None: no bound)
        self.queued = 0
        self.on_batch = on_batch
        self.max_size = max_size
        self.max_wait = max_wait
        self.executor = executor
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self.batches = 0
        self.records = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start the dispatch loop on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop after the batch in flight."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def has_room(self, records: int) -> bool:
        """Whether ``records`` more may wait for the model (``max_queued``; an empty queue takes any request, so a
        limit below one request's size cannot refuse it forever); a caller that finds none answers 503."""
        return self.max_queued is None or self.queued == 0 or self.queued + records <= self.max_queued

    async def submit(
        self, records: list[dict[str, Any]], model: Any = None, explain: list[bool] | None = None
    ) -> Result:
        """Queue records for ``model`` and wait for (probabilities, model info, milliseconds of the model call that
        scored them, explanations) of exactly these records. ``explain`` marks the records to explain as well
        (``explain_fn``'s answer for those, None for the others); without it the explanations are None."""
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((records, model, future, explain if explain and any(explain) else None))
        self.queued += len(records)
        return await future

    async def _collect(self) -> list[Item]:
        first = await self.queue.get()
        items, size = [first], len(first[0])
        await asyncio.sleep(0)  # let requests that arrived in the same loop iteration enqueue
        if self.queue.empty():
            return items  # alone: no reason to wait
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while size < self.max_size:
            if self.queue.empty():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), remaining)
                except TimeoutError:
                    break
            else:
                item = self.queue.get_nowait()
            items.append(item)
            size += len(item[0])
        return items

    async def _run(self) -> None:
        while True:
            items = await self._collect()
            by_model: dict[int, list[Item]] = {}
            for item in items:
                by_model.setdefault(id(item[1]), []).append(item)
            for group in by_model.values():
                await self._score(group)

    def _call(
        self, records: list[dict[str, Any]], model: Any, explain: list[bool] | None
    ) -> tuple[tuple[np.ndarray, Any], float, list[dict[str, Any]] | Exception | None]:
        started = time.perf_counter()
        result = self.fn(records, model)
        call_ms = (time.perf_counter() - started) * 1000
        if explain is None or self.explain_fn is None:
            return result, call_ms, None
        try:
            explained = self.explain_fn([r for r, wanted in zip(records, explain, strict=True) if wanted], model)
        except Exception as error:  # only the requests that asked for explanations fail
            return result, call_ms, error
        return result, call_ms, explained

    async def _score(self, items: list[Item]) -> None:
        records = [r for chunk, _, _, _ in items for r in chunk]
        self.queued -= len(records)
        if self.on_batch is not None:
            self.on_batch(len(records))
        explain = None
        if any(wanted is not None for _, _, _, wanted in items):
            explain = [bool(w) for chunk, _, _, wanted in items for w in (wanted or [False] * len(chunk))]
        try:
            loop = asyncio.get_running_loop()
            (probabilities, info), call_ms, explained = await loop.run_in_executor(
                self.executor, self._call, records, items[0][1], explain
            )
        except Exception as error:
            for _, _, future, _ in items:
                if not future.done():
                    future.set_exception(error)
            return
        self.batches += 1
        self.records += len(records)
        start, answers = 0, iter(explained if isinstance(explained, list) else ())
        for chunk, _, future, wanted in items:
            if wanted is not None and isinstance(explained, Exception):
                if not future.done():
                    future.set_exception(explained)
                start += len(chunk)
                continue
            explanations = None if wanted is None else [next(answers) if w else None for w in wanted]
            if not future.done():
                future.set_result((probabilities[start : start + len(chunk)], info, call_ms, explanations))
            start += len(chunk)
