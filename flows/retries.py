"""Task retries only for failures that can heal: the one policy of the flows' I/O tasks.

`@task(**healing_retries())` retries with exponential backoff (TASK_RETRY_BACKOFF_S,
doubling, jittered) when `is_transient` says the failure was the network or the object
store being unavailable for a moment: connection refused or reset, timeouts, S3 throttling
or 5xx answers, HTTP 5xx / 408 / 429, and StorageError unless its cause is a permanent one.
A bad input never heals, so it is never retried: ValueError (bad parameters, a broken
snapshot), FileNotFoundError (no such source or model), denied access or no credentials.
The library's calls are idempotent and resume, so a retry redoes only what was missing.
"""

from __future__ import annotations

import socket
import urllib.error
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError, HTTPClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError
from prefect import Task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.tasks import exponential_backoff

from colorization.constants import TASK_RETRIES, TASK_RETRY_BACKOFF_S, TASK_RETRY_JITTER
from colorization.storage import StorageError

# S3 error codes that mean "not now" rather than "never" (AWS, MinIO, Ceph, R2 alike).
TRANSIENT_S3_CODES = frozenset({
    "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "RequestTimeTooSkewed",
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
    "OperationAborted"})
TRANSIENT_HTTP_STATUS = frozenset({408, 429})  # and every 5xx
# Failures that say the input is wrong: decisive even when they wrap a network error.
PERMANENT = (ValueError, TypeError, LookupError, FileNotFoundError, PermissionError,
             IsADirectoryError, NotADirectoryError, NoCredentialsError)


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` is a failure that may heal by itself, so a retry is worth it."""
    for cause in _chain(exc):  # outermost first: the first decisive verdict wins
        verdict = _verdict(cause)
        if verdict is not None:
            return verdict
    # A storage failure of no known kind (e.g. a truncated read): worth another try.
    return any(isinstance(cause, StorageError) for cause in _chain(exc))


def _verdict(exc: BaseException) -> bool | None:
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        code = exc.response.get("Error", {}).get("Code")
        return code in TRANSIENT_S3_CODES or status >= 500 or status in TRANSIENT_HTTP_STATUS
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code in TRANSIENT_HTTP_STATUS
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        return _verdict(exc.reason)
    if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror, BotoConnectionError,
                        HTTPClientError)):  # HTTPClientError: botocore's read timeouts
        return True
    if isinstance(exc, PERMANENT):
        return False
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def retry_if_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect's `retry_condition_fn`: retry only when the failure can heal."""
    try:
        state.result()  # raises the task's exception
    except BaseException as exc:  # noqa: BLE001 - classified, not swallowed
        return is_transient(exc)
    return False


def healing_retries(retries: int = TASK_RETRIES, backoff_s: float = TASK_RETRY_BACKOFF_S
                    ) -> dict[str, Any]:
    """Keyword arguments for `@task`: `retries` tries more for failures that can heal, after
    `backoff_s`, 2 x `backoff_s`, ... (each +/- TASK_RETRY_JITTER); none for a bad input."""
    return {"retries": retries,
            "retry_delay_seconds": exponential_backoff(backoff_factor=backoff_s),
            "retry_jitter_factor": TASK_RETRY_JITTER,
            "retry_condition_fn": retry_if_transient}
