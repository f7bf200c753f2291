"""The local stack's triggers, running by themselves as AWS runs them.

- S3 -> EventBridge -> StartFromS3Function: every object created in a bucket with EventBridge
  notifications becomes AWS's "Object Created" event, one per completed upload as S3 sends it
  (moto also announces a completed multipart upload as a plain Put, which S3 does not); each
  enabled rule it matches (the template's pattern, in moto's rule engine) has its Lambda
  targets invoked asynchronously, as EventBridge does: up to 3 attempts, then the event goes
  to the function's dead-letter queue. moto's own delivery is replaced because its event is
  not AWS's shape and it has no Lambda rule target.
- SQS -> StartFromSqsFunction: a poller thread, as Lambda's event source mapping is, delivering
  batches of the template's size with partial batch failures (`LocalStack.deliver_messages`).
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger("collage_tools.triggers")
ASYNC_ATTEMPTS = 3  # Lambda's asynchronous invocation: the call and 2 retries
POLL_IDLE_SECONDS = 0.2  # between empty receives (Lambda long-polls; this is a local stand-in)
# The `reason` S3 gives each kind of "Object Created" event, by moto's event name.
CREATED_REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
}


class Triggers:
    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self._events = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eventbridge")
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="sqs-mapping", daemon=True)
        self._saved_delivery: Any = None
        # The last "Object Created" event of each key, and the events to send again instead
        # of a new one (a resumed `collage run`: the same event is the same run).
        self.events: dict[str, dict[str, Any]] = {}
        self.replay: dict[str, dict[str, Any]] = {}
        props = stack.template["Resources"]["StartFromSqsFunction"]["Properties"]
        self.batch_size = int(props["Events"]["CsvMessage"]["Properties"].get("BatchSize", 10))

    def start(self) -> Triggers:
        from moto.s3 import notifications

        self._saved_delivery = notifications._send_event_bridge_message
        notifications._send_event_bridge_message = self._on_object_event
        self._poller.start()
        return self

    def stop(self) -> None:
        from moto.s3 import notifications

        self._stop.set()
        self._poller.join(timeout=30)
        self._events.shutdown(wait=True)
        if self._saved_delivery is not None:
            notifications._send_event_bridge_message = self._saved_delivery

    # ------------------------------------------------------------------ S3 -> EventBridge
    def _on_object_event(self, account_id: str, bucket: Any, event_name: str, key: Any) -> None:
        """moto calls this for each object event of a bucket with EventBridge enabled."""
        from collage_tools.emulator import s3_object_created_event

        reason = CREATED_REASONS.get(event_name)  # a str enum: equal to its value
        if reason is None:
            return
        if reason == "PutObject" and getattr(key, "multipart", None) is not None:
            return  # moto's inner Put of CompleteMultipartUpload, which sends its own event
        etag = key.etag.strip('"')
        event = self.replay.pop(key.name, None) or s3_object_created_event(
            bucket.name, key.name, key.size, etag, reason
        )
        self.events[key.name] = event
        for function in self._matching_targets(account_id, bucket.region_name, event):
            self._events.submit(self._invoke_async, function, event)

    def _matching_targets(self, account_id: str, region: str, event: Any) -> list[str]:
        """The Lambda functions of the enabled rules on the default bus that match `event`."""
        from moto.events.models import events_backends

        bus = events_backends[account_id][region].event_buses.get("default")
        rules = bus.rules.values() if bus else []
        return [
            target["Arn"].rsplit(":function:", 1)[-1]
            for rule in rules
            if rule.state == "ENABLED" and rule.event_pattern.matches_event(event)
            for target in rule.targets
            if ":lambda:" in target["Arn"]
        ]

    def _invoke_async(self, function: str, event: dict[str, Any]) -> None:
        error: Exception | None = None
        for _ in range(ASYNC_ATTEMPTS):
            try:
                self.stack.call_function(function, event)
                return
            except Exception as failure:  # the handler's error, as Lambda records it
                error = failure
        log.warning(
            "%s failed %d times; event sent to the DLQ: %s", function, ASYNC_ATTEMPTS, error
        )
        self.stack.client("sqs").send_message(
            QueueUrl=self.stack.names["ProcessingDeadLetterQueue"],
            MessageBody=json.dumps(event),
            MessageAttributes={
                "ErrorCode": {"DataType": "String", "StringValue": "200"},
                "ErrorMessage": {"DataType": "String", "StringValue": str(error)[:1000]},
            },
        )

    # ------------------------------------------------------------------ SQS -> Lambda
    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                delivered = self.stack.deliver_messages(self.batch_size)
            except Exception:  # keep polling, as the mapping does; the log says why
                log.exception("delivering queued messages failed")
                delivered = []
            if not delivered:
                self._stop.wait(POLL_IDLE_SECONDS)
