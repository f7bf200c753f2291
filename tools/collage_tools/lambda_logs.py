"""What CloudWatch Logs is to Lambda, for the local runtime: the lines a worker writes on stderr.

A worker's stderr carries three kinds of lines: the handlers' JSON log lines (Powertools'
Logger: a document with a `level`), metric lines (Powertools' EMF documents, keyed `_aws`), and
anything else a library prints. The log lines become records of the `collage.lambda` logger,
their keys (such as `reason`) kept as attributes; metric lines are dropped; with `verbose`
every line but the metric ones is also shown on stderr as the function wrote it. A marker line
(`END_OF_LOGS`) closes each invocation's lines, so the runtime can return an answer only once
its log lines are in.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from typing import Any

from collage_tools.lambda_worker import END_OF_LOGS

LOG = logging.getLogger("collage.lambda")
# The attributes a LogRecord has of its own: a log line's keys that clash are left out.
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def forward_logs(stream: Any, function: str, verbose: bool, logged: threading.Event) -> None:
    """Forward each line of a worker's stderr (see the module docstring) until it closes;
    set `logged` at each invocation's end-of-logs marker."""
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\n")
        if line.startswith(END_OF_LOGS):
            logged.set()
            continue
        document = _json(line)
        if verbose and not _is_metric(document):
            sys.stderr.write(line + "\n")
        if _is_log(document):
            LOG.handle(log_record(document, function))
    stream.close()


def _json(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


def _is_log(document: Any) -> bool:
    """A handler's log line (Powertools' Logger writes a `level`)."""
    return isinstance(document, dict) and "level" in document


def _is_metric(document: Any) -> bool:
    """A metric line (Powertools' EMF document) and not a log line: never shown."""
    return isinstance(document, dict) and "_aws" in document and "level" not in document


def log_record(document: dict[str, Any], function: str) -> logging.LogRecord:
    """A handler's JSON log line as a record of the `collage.lambda` logger."""
    level = logging.getLevelName(str(document.get("level", "INFO")).upper())
    extra = {k: v for k, v in document.items() if k not in _RECORD_FIELDS}
    extra["function"] = function
    return LOG.makeRecord(
        LOG.name,
        level if isinstance(level, int) else logging.INFO,
        str(document.get("location", function)),
        0,
        str(document.get("message", "")),
        (),
        None,
        extra=extra,
    )
