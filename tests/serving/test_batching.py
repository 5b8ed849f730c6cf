import asyncio

import pytest

from serving.batching import Batcher, release_slot


def test_requests_that_arrive_while_busy_form_the_next_batch() -> None:
    seen: list[list[int]] = []

    async def double(items: list[int]) -> list[int | Exception]:
        seen.append(items)
        await asyncio.sleep(0.05)
        return [2 * i for i in items]

    async def main() -> list[int]:
        batcher = Batcher(double, max_size=4, slots=1)
        first = asyncio.create_task(batcher.submit(0))
        await asyncio.sleep(0.01)  # the first batch is running: the next six queue up
        rest = [asyncio.create_task(batcher.submit(i)) for i in range(1, 7)]
        return [await first, *[await r for r in rest]]

    assert asyncio.run(main()) == [0, 2, 4, 6, 8, 10, 12]
    assert seen == [[0], [1, 2, 3, 4], [5, 6]]  # an idle batcher adds no wait; max_size caps a batch


def test_a_failed_item_fails_alone_and_a_raising_batch_fails_whole() -> None:
    async def picky(items: list[int]) -> list[int | Exception]:
        if 99 in items:
            raise RuntimeError("the batch broke")
        return [ValueError(f"bad {i}") if i < 0 else i for i in items]

    async def main() -> list[object]:
        batcher = Batcher(picky, slots=1)
        ok, bad = await asyncio.gather(batcher.submit(1), batcher.submit(-1), return_exceptions=True)
        broken = await asyncio.gather(batcher.submit(99), return_exceptions=True)
        return [ok, bad, *broken]

    ok, bad, broken = asyncio.run(main())
    assert ok == 1
    assert isinstance(bad, ValueError) and str(bad) == "bad -1"
    assert isinstance(broken, RuntimeError)


def test_two_slots_overlap_batches() -> None:
    running, peak = 0, 0

    async def slow(items: list[int]) -> list[int | Exception]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        return list(items)

    async def main() -> None:
        batcher = Batcher(slow, slots=2)
        first = asyncio.create_task(batcher.submit(0))
        await asyncio.sleep(0.005)  # the first batch is running: the second slot takes the next
        assert await asyncio.gather(first, batcher.submit(1)) == [0, 1]

    asyncio.run(main())
    assert peak == 2
    with pytest.raises(ValueError):
        Batcher(slow, max_size=0)


def test_a_batch_that_releases_its_slot_lets_the_next_one_start() -> None:
    """The retriever service's pipeline: once a batch's query vectors are back it releases its
    slot, and the next batch is embedded while the first is still being searched."""
    events: list[str] = []

    async def staged(items: list[int]) -> list[int | Exception]:
        events.append(f"embed {items}")
        await asyncio.sleep(0.01)
        release_slot()
        await asyncio.sleep(0.05)  # searching
        events.append(f"done {items}")
        return list(items)

    async def main() -> list[int]:
        batcher = Batcher(staged, slots=1)
        first = asyncio.create_task(batcher.submit(0))
        await asyncio.sleep(0.005)
        second = asyncio.create_task(batcher.submit(1))
        return [await first, await second]

    assert asyncio.run(main()) == [0, 1]
    assert events == ["embed [0]", "embed [1]", "done [0]", "done [1]"]
    release_slot()  # outside a batch: nothing to release
