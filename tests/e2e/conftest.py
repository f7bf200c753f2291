"""Fixtures of the end-to-end suites."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from collage_tools.cover_server import CoverServer


@pytest.fixture
def server() -> Iterator[CoverServer]:
    """A loopback cover server of the test's own (its faults and files are the test's)."""
    with CoverServer() as cover_server:
        yield cover_server
