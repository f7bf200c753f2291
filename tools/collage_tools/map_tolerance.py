"""The Distributed Map's failure tolerance, as AWS applies it (moto 5.2 counts failed items but
never fails the map run for them).

On AWS a map run fails with States.ExceedToleratedFailureThreshold once its failed items (a
child execution that failed or timed out) exceed ToleratedFailureCount, or exceed
ToleratedFailurePercentage of its items; the items not started yet are not run. The state
machine's Catch on the map then hands the run to the aggregate step with `map_error`, and the
report says so. Without this, a local run in which every collage task crashed would end
`completed_with_failures` where AWS ends it `failed`.

moto keeps an undeclared ToleratedFailureCount as 0, like a declared 0: a count of 0 is read
as "not declared", and the percentage (0 when undeclared too: any failure fails the map, as
AWS's default) applies whenever no count is.
"""

from __future__ import annotations

from typing import Any

THRESHOLD_ERROR = "States.ExceedToleratedFailureThreshold"
THRESHOLD_CAUSE = "The specified tolerated failure threshold was exceeded"


def past_tolerance(record: Any, items: int) -> bool:
    """True once the map run's failed items exceed what its state tolerates."""
    counter = record.item_counter
    failed = counter.failed.get() + counter.timed_out.get()
    count, percentage = record.tolerated_failure_count, record.tolerated_failure_percentage
    if count and failed > count:
        return True
    if percentage or not count:
        return failed * 100 > percentage * items
    return False


def threshold_exceeded(env: Any) -> Exception:
    """The map run's failure, as moto's engine raises a state's failure."""
    from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
        StatesErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    details = MapRunFailedEventDetails(error=THRESHOLD_ERROR, cause=THRESHOLD_CAUSE)
    return FailureEventException(
        FailureEvent(
            env=env,
            error_name=StatesErrorName(StatesErrorNameType.StatesExceedToleratedFailureThreshold),
            event_type=HistoryEventType.MapRunFailed,
            # moto's TypedDict is total; its own code builds it with one key, as here.
            event_details=EventDetails(mapRunFailedEventDetails=details),  # type: ignore[typeddict-item]
        )
    )
