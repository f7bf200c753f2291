"""The documents that pass between the steps, as typed models validated at each handler's edge.

    execution input ─> SplitByCreator(SplitEvent) ─> SplitResult at $.split
                    ─> RenderCollages: one RenderEvent per MapItem ─> CreatorSummary
                    ─> Aggregate(AggregateEvent) ─> RunSummary (the execution's output)

The state machine's paths name these fields; tests/integration/test_contracts.py checks the
ASL against the models, so a renamed field fails a test instead of a run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from collage.config import MAX_URL_LENGTH, ProcessingConfig, resolve_constraints
from collage.naming import check_prefix
from collage.validation import describe

resolve_constraints()  # the models below hold a ProcessingConfig: pydantic reads its annotations


class StepDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InvalidEvent(ValueError):
    """A handler's event does not match its contract (a bug or a hand-made event, not data)."""

    @classmethod
    def from_validation(cls, step: str, error: ValidationError) -> InvalidEvent:
        return cls(f"{step} event does not match its contract: {describe(error, limit=5)}")


class Run(StepDocument):
    id: str = Field(min_length=1, max_length=80)  # the execution name
    trigger: Literal["s3", "sqs"]
    source_bucket: str
    source_key: str
    # `bucket/key` URL-encoded, as S3's CopyObject wants its CopySource: the state machine's
    # last-resort park copies with it, and no States.* intrinsic function URL-encodes.
    copy_source: str = ""
    # The uploaded object's ETag: the run copies, reads and parks only that upload's content,
    # never a later upload to the same key (None for a message's CSV, whose key is its own).
    source_etag: str | None = None
    csv_name: str
    # The event's time to the second and the execution name's digest (20250119T103000Z-
    # f0c56ed377): every key a run writes has it, so two uploads in one second never share one.
    timestamp: str
    output_prefix: str  # ends with "collages/"
    temp_prefix: str  # runs/<id>/ in the temp bucket

    @model_validator(mode="before")
    @classmethod
    def _encoded_copy_source(cls, values: Any) -> Any:
        """Filled in from the bucket and key when a document (an older run's) lacks it."""
        if isinstance(values, dict) and not values.get("copy_source"):
            bucket, key = values.get("source_bucket"), values.get("source_key")
            if isinstance(bucket, str) and isinstance(key, str):
                values = {**values, "copy_source": copy_source(bucket, key)}
        return values


def copy_source(bucket: str, key: str) -> str:
    """S3's CopySource for bucket/key: UTF-8, percent-encoded (a space, `+`, `%`, `é`...)."""
    from urllib.parse import quote

    return quote(f"{bucket}/{key}", safe="/")


class MapSettings(StepDocument):
    max_concurrency: int = Field(40, ge=1, le=10_000)
    tolerated_failure_percentage: float = Field(25.0, ge=0, le=100)

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> MapSettings:
        """The stack's map settings (MAP_MAX_CONCURRENCY, MAP_TOLERATED_FAILURE_PERCENTAGE),
        the concurrency held to the collage task's reserved concurrency when there is one
        (RENDER_RESERVED_CONCURRENCY, 0 for none): one run alone is then never throttled."""
        values = {
            "max_concurrency": env.get("MAP_MAX_CONCURRENCY"),
            "tolerated_failure_percentage": env.get("MAP_TOLERATED_FAILURE_PERCENTAGE"),
        }
        settings = cls.model_validate({k: v for k, v in values.items() if v})
        reserved = int(env.get("RENDER_RESERVED_CONCURRENCY") or 0)
        if 0 < reserved < settings.max_concurrency:
            return settings.model_copy(update={"max_concurrency": reserved})
        return settings


class ExecutionInput(StepDocument):
    """What a starter gives the state machine."""

    run: Run
    config: ProcessingConfig
    map: MapSettings


class SplitEvent(StepDocument):
    run: Run
    config: ProcessingConfig


class SplitResult(StepDocument):
    """What the split returns; the state machine keeps it at $.split."""

    items_key: str
    rows: int
    rows_rejected: int
    row_warnings: int
    row_issues_unlisted: int = 0
    creators: int
    covers: int
    covers_cut: int


class MapItem(StepDocument):
    """One creator's covers in tile order (an element of items.json)."""

    creator: str
    name: str  # the creator's safe key segment
    urls: list[Annotated[str, Field(max_length=MAX_URL_LENGTH)]] = Field(max_length=100)
    lines: list[int] = Field(default_factory=list)  # CSV line of each URL
    cut: int = 0  # covers beyond max_images_per_creator


class RenderEvent(StepDocument):
    run: Run
    config: ProcessingConfig
    item: MapItem


CreatorStatus = Literal["ok", "partial", "failed"]


class CreatorSummary(StepDocument):
    """What a map child returns (the full result record stays in S3)."""

    creator: str
    status: CreatorStatus
    collages: int
    covers_failed: int


class CoverFailure(StepDocument):
    """A cover that could not be used: its CSV line, URL (scrubbed), reason code and reason."""

    line: int | None
    url: str
    code: str | None
    error: str | None


class CreatorResult(BaseModel):
    """A creator's result record (`results/<name>.json`): what its collage task did.

    The collage task writes it once; the aggregate reads it into the report (in this field
    order) and the contact sheet. Keys an older release wrote and this one does not know are
    ignored, so a run redriven across a deploy still reads its records.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)
    creator: str
    name: str
    status: CreatorStatus
    error: str | None = None
    collages: list[str] = Field(default_factory=list)
    thumbnail: str | None = None
    covers: int = 0
    covers_ok: int = 0
    covers_failed: int = 0
    covers_cut: int = 0
    failures: list[CoverFailure] = Field(default_factory=list)
    bytes_downloaded: int = 0
    download_seconds: float = 0.0
    render_seconds: float = 0.0

    @classmethod
    def failed(cls, creator: str, name: str, reason: str) -> CreatorResult:
        """A creator without a collage (its task failed, or never recorded a result)."""
        return cls(creator=creator, name=name, status="failed", error=reason)

    @property
    def done(self) -> bool:
        """A retried or redriven task does nothing again for a creator with this result."""
        return self.status != "failed"

    def summary(self) -> CreatorSummary:
        """The small value a map child returns (the full record stays in S3)."""
        return CreatorSummary(
            creator=self.creator,
            status=self.status,
            collages=len(self.collages),
            covers_failed=self.covers_failed,
        )


class StepError(BaseModel):
    """A caught error, as Step Functions records it at a Catch's ResultPath."""

    model_config = ConfigDict(frozen=True)
    Error: str = "Error"
    Cause: str | None = None


class AggregateEvent(StepDocument):
    """The whole state at the end of a run (Aggregate), or after a failed split."""

    run: Run
    config: ProcessingConfig | None = None
    map: MapSettings | None = None
    split: SplitResult | None = None
    split_error: StepError | None = None
    map_error: StepError | None = None
    aggregate_error: StepError | None = None  # RecordAggregateFailure: report without results
    map_result: dict[str, Any] | None = None  # the Distributed Map's ResultWriter details

    def failure(self) -> tuple[StepError | None, str | None]:
        """The error that failed the run as a whole, and the stage it came from."""
        if self.split_error:
            return self.split_error, "split"
        if self.map_error:
            return self.map_error, "map"
        if self.aggregate_error:
            return self.aggregate_error, "aggregate"
        return None, None


class CsvMessage(BaseModel):
    """The body of an SQS message that carries a CSV (other keys are ignored)."""

    model_config = ConfigDict(frozen=True)
    processing_type: Literal["csv_data"]
    csv_data: str = Field(min_length=1, pattern=r"\S")  # not blank
    output_prefix: str  # a hostile one is refused, never neutralised: see check_prefix
    processing_config: dict[str, Any] | None = None

    @field_validator("output_prefix")
    @classmethod
    def _safe_prefix(cls, value: str) -> str:
        return check_prefix(value)


class CreatorTotals(StepDocument):
    total: int = 0
    succeeded: int = 0
    partial: int = 0
    failed: int = 0


class CoverTotals(StepDocument):
    downloaded: int = 0
    failed: int = 0
    cut: int = 0
    bytes: int = 0


class RowTotals(StepDocument):
    used: int = 0
    rejected: int = 0
    warnings: int = 0


class RunTotals(StepDocument):
    """The report's totals (also in the run summary)."""

    creators: CreatorTotals = CreatorTotals()
    covers: CoverTotals = CoverTotals()
    collages: int = 0
    rows: RowTotals = RowTotals()

    @property
    def problems(self) -> int:
        """Failed creators, failed covers and rejected rows (each one a cover not there)."""
        return self.creators.failed + self.covers.failed + self.rows.rejected


RunStatus = Literal["succeeded", "completed_with_failures", "failed", "superseded"]


class RunError(StepDocument):
    """Why a run failed as a whole: the stage and the error, in one line."""

    stage: Literal["split", "map", "aggregate"]
    reason: str | None


class RunReport(StepDocument):
    """The run report's head (`report_TIMESTAMP.json`); its `creators` (one CreatorResult each,
    as many as the run had) are streamed after it, and the contact sheet reads it."""

    run_id: str
    status: RunStatus
    error: RunError | None = None
    superseded: str | None = None
    trigger: Literal["s3", "sqs"]
    source: str  # s3://bucket/key the run was started for
    csv: str | None = None  # where its CSV was parked (None when there was nothing to park)
    timestamp: str
    finished_at: str
    config: dict[str, Any]
    totals: RunTotals
    row_issues: list[dict[str, Any]]  # by line; the first ones when there are very many
    row_issues_unlisted: int = 0
    row_issues_all: str | None = None  # every row issue, beside the report, when unlisted


class RunSummary(StepDocument):
    """The execution's output (and `collage run`'s stdout); DidRunSucceed reads `status`."""

    run_id: str
    status: RunStatus
    error: RunError | None = None
    superseded: str | None = None  # why nothing was split: the upload was replaced
    creators: CreatorTotals
    covers: CoverTotals
    collages: int
    rows: RowTotals
    # The first row issues, each with its line, column and quoted value (at most 200
    # characters each, so the summary stays far below Step Functions' 256 KiB).
    row_issues_first: list[dict[str, Any]]
    collages_at: str
    report: str
    sheet: str
    csv: str | None


def parse_event(model: type[StepDocument], event: Any, step: str) -> Any:
    """`model` from a handler's event, or InvalidEvent naming what does not match."""
    try:
        return model.model_validate(event)
    except ValidationError as error:
        raise InvalidEvent.from_validation(step, error) from None
