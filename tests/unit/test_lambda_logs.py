"""The local runtime's log forwarding: a worker's stderr lines as CloudWatch Logs takes them."""

from __future__ import annotations

import io
import json
import logging
import threading

import pytest

from collage_tools.lambda_logs import forward_logs
from collage_tools.lambda_worker import END_OF_LOGS

LOG_LINE = json.dumps(
    {"level": "WARNING", "location": "split:42", "message": "row skipped", "reason": "blank URL"}
)
METRIC_LINE = json.dumps({"_aws": {"CloudWatchMetrics": []}, "Rows": 3})
PLAIN_LINE = "a library's own warning"


def stream_of(*lines: str) -> io.BytesIO:
    return io.BytesIO("".join(line + "\n" for line in lines).encode())


@pytest.mark.parametrize("verbose", [False, True])
def test_log_lines_become_records_metric_lines_are_dropped(verbose, caplog, capsys):
    stream = stream_of(PLAIN_LINE, METRIC_LINE, LOG_LINE, f"{END_OF_LOGS} request-1")
    logged = threading.Event()
    with caplog.at_level(logging.DEBUG, logger="collage.lambda"):
        forward_logs(stream, "collage-local-SplitFunction", verbose, logged)
    [record] = caplog.records
    assert (record.levelno, record.getMessage(), record.pathname) == (
        logging.WARNING,
        "row skipped",
        "split:42",
    )
    assert record.reason == "blank URL" and record.function == "collage-local-SplitFunction"
    assert logged.is_set() and stream.closed
    shown = capsys.readouterr().err
    assert shown == (f"{PLAIN_LINE}\n{LOG_LINE}\n" if verbose else "")


def test_an_unknown_level_is_logged_as_info_and_record_fields_are_not_overwritten(caplog):
    line = json.dumps({"level": "TRACE", "message": "hello", "name": "not the logger's"})
    with caplog.at_level(logging.DEBUG, logger="collage.lambda"):
        forward_logs(stream_of(line), "f", False, threading.Event())
    [record] = caplog.records
    assert record.levelno == logging.INFO and record.name == "collage.lambda"
    assert record.pathname == "f" and record.getMessage() == "hello"
