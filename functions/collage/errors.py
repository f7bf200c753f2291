"""Which failures are worth retrying: the state machine retries `TransientError` only."""

from __future__ import annotations

import functools
from collections.abc import Callable

# S3 / botocore error codes that mean "try again later", not "this input is wrong".
TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
}


class TransientError(RuntimeError):
    """A failure of infrastructure, not of input: the state machine's Retry matches this name."""


def is_transient(error: BaseException) -> bool:
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(error, ConnectionError | HTTPClientError):
        return True
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in TRANSIENT_CODES or status >= 500
    return False


def retried_when_transient[**P, R](function: Callable[P, R]) -> Callable[P, R]:
    """Decorate a step: an infrastructure failure leaves it as TransientError, which the state
    machine's Retry matches; any other failure leaves it unchanged (and is not retried)."""

    @functools.wraps(function)
    def step(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except TransientError:
            raise
        except Exception as error:
            if is_transient(error):
                raise TransientError(f"{type(error).__name__}: {error}") from error
            raise

    return step
