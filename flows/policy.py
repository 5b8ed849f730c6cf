"""How the flows run under Prefect: time limits, which failures earn a retry, and the per-collection
lock that keeps two refreshes of one collection from running at once.

Resuming needs no persisted task results (and persisting would pickle whole document batches):
ids come from content and every write is idempotent, so a re-run or a retry redoes only what is
missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from typing import Any

from prefect.task_engine import TaskRunTimeoutError
from prefect.tasks import exponential_backoff

# Generous: a hung run must end, a large corpus must not be cut off (embedding runs ~100 rows/s/core).
INGEST_TIMEOUT_S = 2 * 3600
EMBED_TIMEOUT_S = 6 * 3600
REFRESH_TIMEOUT_S = INGEST_TIMEOUT_S + EMBED_TIMEOUT_S
TASK_RETRIES = 2
RETRY_DELAYS = exponential_backoff(backoff_factor=5)(TASK_RETRIES)  # 5 s, 10 s
RETRY_JITTER = 0.5
REFRESH_LOCK_WAIT_S = 3600.0

# Missing or forbidden paths do not heal by waiting; a task that hit its time limit would again.
_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, TaskRunTimeoutError)
# Ray failures of the cluster rather than of the code (a RayTaskError wraps the code's own error).
_RAY_TRANSIENT = {
    "RayActorError",
    "ActorDiedError",
    "ActorUnavailableError",
    "ObjectLostError",
    "OwnerDiedError",
    "NodeDiedError",
    "WorkerCrashedError",
    "RaySystemError",
    "GetTimeoutError",
    "OutOfMemoryError",
    "ObjectStoreFullError",
}


def is_transient(exc: BaseException) -> bool:
    """Worth a retry: I/O and network errors (storage, LanceDB commit conflicts) and lost Ray
    workers; not bad input or bugs, which fail the same way again."""
    if isinstance(exc, _PERMANENT):
        return False
    if isinstance(exc, OSError):
        return True
    return any(cls.__name__ in _RAY_TRANSIENT for cls in type(exc).__mro__)


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """A Prefect `retry_condition_fn`."""
    exc = state.data if isinstance(state.data, BaseException) else state.result(raise_on_failure=False)
    return isinstance(exc, BaseException) and is_transient(exc)


TRANSIENT_RETRIES: dict[str, Any] = {
    "retries": TASK_RETRIES,
    "retry_delay_seconds": RETRY_DELAYS,
    "retry_jitter_factor": RETRY_JITTER,
    "retry_condition_fn": retry_if_transient,
}


def lock_name(job: str, collection: str) -> str:
    return f"{job}-{collection}"


def _ensure_limit(name: str) -> None:
    """Create the 1-slot global concurrency limit NAME unless it exists (Prefect ignores a
    `concurrency()` on a limit that does not exist)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another run created it first
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))


@contextmanager
def collection_lock(job: str, collection: str, wait_s: float = REFRESH_LOCK_WAIT_S) -> Iterator[None]:
    """Hold the collection's slot for JOB while the block runs; wait up to WAIT_S for it, then fail
    with a one-line reason. The slot is a lease: if the holder dies, a Prefect server with its
    services running (`ragline up`) frees it when the lease expires; Prefect's temporary server
    runs no such service, hence the hint in the error."""
    from prefect.concurrency.sync import concurrency

    name = lock_name(job, collection)
    _ensure_limit(name)
    with ExitStack() as stack:
        try:
            stack.enter_context(
                concurrency(
                    name, occupy=1, timeout_seconds=wait_s, strict=True, raise_on_lease_renewal_failure=False
                )
            )
        except TimeoutError:
            raise RuntimeError(
                f"another {job} of collection {collection!r} is running (waited {wait_s:.0f} s for the "
                f"concurrency limit {name!r}; if none runs: prefect gcl update {name} --active-slots 0)"
            ) from None
        yield
