"""Fixtures shared by the suites: a loopback cover server and the embedded local stack."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("SAM_CLI_TELEMETRY", "0")
# The template sets it for every function; handlers imported by a test need it too.
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "TikTokCoverCollage")
# And the names each handler module checks at import (its Environment): a test wires the
# handler it calls with a Runtime of its own, so these placeholders are never used.
for _name in ("INPUT_BUCKET", "OUTPUT_BUCKET", "TEMP_BUCKET"):
    os.environ.setdefault(_name, f"unused-{_name.lower().replace('_', '-')}")
os.environ.setdefault(
    "STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:unused"
)

SMALL_COVER = (216, 384)  # one tile: fast to make and to decode


@pytest.fixture(scope="module")
def cover_server():
    from collage_tools.cover_server import CoverServer

    with CoverServer() as server:
        yield server


@pytest.fixture(scope="module")
def covers(cover_server):
    """URLs of 40 small synthetic JPEG covers, `/c/000.jpg` ..."""
    from collage_tools.covers import make_cover

    return [cover_server.add(f"/c/{n:03d}.jpg", make_cover(n, SMALL_COVER)) for n in range(40)]


@pytest.fixture
def local_stack():
    """A fresh embedded stack (moto) with the real template, ASL and handlers."""
    from collage_tools.emulator import LocalStack

    with LocalStack(allow_loopback=True) as stack:
        yield stack


@pytest.fixture
def inline_stack():
    """The stack with its handlers in threads of this process (`lambda_isolation="inline"`):
    for tests whose faults are injected into this process's S3 clients (support/s3_faults.py),
    which a worker process's clients would not see."""
    from collage_tools.emulator import LocalStack

    with LocalStack(allow_loopback=True, lambda_isolation="inline") as stack:
        yield stack
