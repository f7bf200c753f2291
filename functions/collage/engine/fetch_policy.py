"""What a download may do (`FetchPolicy`) and how it failed (`DownloadError`).

Kept apart from `download`, which imports requests and urllib3 (~100 ms and ~20 MB): a render
of local files, or a process that only builds policies, never pays for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from collage.config import ProcessingConfig

if TYPE_CHECKING:
    from collage.engine.url_guard import AddressGuard


@dataclass(frozen=True)
class FetchPolicy:
    connect_timeout: float = 5.0
    read_timeout: float = 30.0  # per read on the socket; from ProcessingConfig.timeout
    total_timeout: float = 60.0  # one URL, all attempts and redirects together
    max_retries: int = 3  # retries after the first attempt (429, 5xx, resets, timeouts)
    max_bytes: int = 20 * 1024 * 1024  # enforced while streaming
    max_redirects: int = 5
    # The SSRF policy, built where the handler or tool is wired up; None = AddressGuard():
    # public hosts only (url_guard, with socket and ipaddress, is imported only for URLs).
    address_guard: AddressGuard | None = None
    backoff_base: float = 0.5  # full-jitter backoff: uniform(0, min(cap, base * 2**n))
    backoff_cap: float = 8.0
    retry_after_cap: float = 30.0  # longest Retry-After we wait for

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "read_timeout", "total_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.max_retries < 0 or self.max_redirects < 0 or self.max_bytes < 1:
            raise ValueError("max_retries and max_redirects must be >= 0, max_bytes >= 1")
        if self.backoff_base < 0 or self.backoff_cap < 0 or self.retry_after_cap < 0:
            raise ValueError("backoff settings must be >= 0")

    @classmethod
    def from_config(
        cls,
        config: ProcessingConfig,
        address_guard: AddressGuard | None = None,
    ) -> FetchPolicy:
        return cls(
            connect_timeout=min(5.0, config.timeout),
            read_timeout=config.timeout,
            # `timeout` bounds one cover's download ("Seconds allowed for one cover download"):
            # all its attempts share 2 x timeout, so a server dripping bytes is cut within it.
            total_timeout=2 * config.timeout,
            max_retries=config.max_retries,
            max_bytes=config.max_image_bytes,
            address_guard=address_guard,
        )


class DownloadError(Exception):
    """A cover could not be fetched. `code` is stable (for reports); str() is one clean line."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        attempts: int = 0,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        from collage.engine.url_guard import scrub_text

        super().__init__(scrub_text(message))
        self.code = code
        self.status = status
        self.attempts = attempts
        self.retryable = retryable
        self.retry_after = retry_after
