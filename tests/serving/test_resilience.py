"""The ingress's retry on a lost replica, against real Ray actors that really die."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
import ray
from ray.exceptions import RayActorError

from serving.resilience import retry_if_replica_died


@ray.remote(num_cpus=0)
class Crashing:
    def ask(self) -> str:
        os._exit(1)  # dies the way a crashed replica does, mid-request


@ray.remote(num_cpus=0)
class Steady:
    def ask(self) -> str:
        return "answered"

    def fail(self) -> str:
        raise ValueError("bad input")


def _calls(*actors: Any, method: str = "ask") -> Any:
    queue = list(actors)

    async def call() -> str:
        return await getattr(queue.pop(0), method).remote()

    return call


def test_a_call_that_lost_its_replica_is_asked_again(ray_session: None) -> None:
    assert asyncio.run(retry_if_replica_died(_calls(Crashing.remote(), Steady.remote()))) == "answered"


def test_other_errors_and_a_second_loss_are_not_retried(ray_session: None) -> None:
    steady = Steady.remote()
    with pytest.raises(ValueError, match="bad input"):
        asyncio.run(retry_if_replica_died(_calls(steady, steady, method="fail")))
    with pytest.raises(RayActorError):
        asyncio.run(retry_if_replica_died(_calls(Crashing.remote(), Crashing.remote())))
