"""What keeps the local stack's memory flat at a month's scale (57,000 creators in one run).

Measured on moto 5.2.5 before these (tracemalloc, `benchmarks/run_bench.py --trace`), what grew
with every creator in `collage run`:

1. **Every object ever written**, body and all: the collages (~100-300 KB each) and each
   creator's result record, as moto `FakeKey`s (~6 KB of bookkeeping besides the body).
   -> `FolderBuckets`: a bucket given a folder keeps its objects there, one file per key
   (written whole, then renamed into place), and forgets them: a later GET or HEAD reads the
   file again. `collage run --out DIR` gives the output bucket DIR itself (so the collages
   and the report appear there as they are written) and the temp bucket `DIR/.collage/temp`
   (the run's items, result records, map results: what a resumed run reads again).
2. **Every map child's history**: a Distributed Map's children write their events into one
   `EventManager` of the map run, kept (and never read) until the map ends: ~10 events of
   several KB per creator. -> `DiscardingEventManager`: the children's events are not kept.
   On AWS the children of this map are EXPRESS executions, whose history Step Functions does
   not keep either (it goes to CloudWatch Logs when logging is on).
3. **Every item a map worker had run**: moto's worker recursed once per item, each frame
   holding its item. -> `_iterating_pool`: the same steps as a loop.
4. **The map's items, parsed whole, then one `Job` per item made up front**: the ItemReader
   read items.json (~5 KB per creator) into one string, parsed it into a list, and the job
   pool built every job from it at once. -> `JsonArrayFile`: the ItemReader's object is
   streamed to a file in the work area and indexed by line (the split writes one item per
   line; any other layout falls back to parsing it whole), each item parsed when its child
   starts; `LazyJobPool` makes each job when a worker takes it.
5. **Every thread the engine started** (moto's TMP_THREADS), each holding its task's frame,
   and a JSONPath parser for every path evaluated. -> finished threads are dropped; a path
   is parsed once.
6. **A boto3 client per task** (moto's `boto_client_for`), each leaving its generated class
   behind. -> one client per service and role. And moto registers every S3 model instance it
   makes (for its dashboard): -> S3 keys, ACLs and grants are not registered.

What stays per creator is one small summary per child until the map ends (what the map's
ResultWriter is handed) and the map run's counters.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import json
import os
import tempfile
import threading
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


# ---------------------------------------------------------------------- 1. buckets as folders
class FolderBuckets:
    """Buckets whose objects live in folders: written through to a file, then forgotten."""

    def __init__(self) -> None:
        self.folders: dict[str, Path] = {}
        self._saved: dict[str, Any] = {}

    def add(self, bucket: str, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folders[bucket] = folder.resolve()

    def path(self, bucket: str, key: str) -> Path | None:
        """Where a key lives, or None for a key that would leave the folder."""
        root = self.folders[bucket]
        target = (root / key).resolve()
        if not target.is_relative_to(root) or target == root:
            return None
        return target

    def install(self) -> FolderBuckets:
        from moto.s3.models import S3Backend

        folders = self
        put_object, get_object = S3Backend.put_object, S3Backend.get_object
        self._saved = {"put_object": put_object, "get_object": get_object}

        def put(backend: Any, bucket_name: str, key_name: str, value: bytes, *a: Any, **k: Any):
            key = put_object(backend, bucket_name, key_name, value, *a, **k)
            if bucket_name in folders.folders:
                folders._write(bucket_name, key_name, key)
            return key

        def get(backend: Any, bucket_name: str, key_name: str, *a: Any, **k: Any):
            key = get_object(backend, bucket_name, key_name, *a, **k)
            if key is None and bucket_name in folders.folders:
                return folders._read(backend, bucket_name, key_name)
            return key

        S3Backend.put_object = put  # type: ignore[method-assign,assignment]
        S3Backend.get_object = get  # type: ignore[method-assign,assignment]
        return self

    def uninstall(self) -> None:
        from moto.s3.models import S3Backend

        for name, original in self._saved.items():
            setattr(S3Backend, name, original)
        self._saved = {}

    def _write(self, bucket_name: str, key_name: str, key: Any) -> None:
        from moto.s3.models import s3_backends

        target = self.path(bucket_name, key_name)
        if target is None:
            return  # stays in memory: a key such as "../x" has no place in the folder
        target.parent.mkdir(parents=True, exist_ok=True)
        key.etag  # noqa: B018 - computed (and kept) while the body is still there
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".part-", delete=False) as part:
            key._value_buffer.seek(0)
            while block := key._value_buffer.read(1 << 20):
                part.write(block)
        os.replace(part.name, target)
        # The object is in the folder: moto forgets it (its bookkeeping is what grew).
        backend = s3_backends[key.account_id][key.partition]
        bucket = backend.buckets.get(bucket_name)
        if bucket is not None:
            with contextlib.suppress(KeyError):
                bucket.keys.pop(key_name)
        key.dispose()

    def _read(self, backend: Any, bucket_name: str, key_name: str) -> Any:
        from moto.s3.models import FakeKey

        target = self.path(bucket_name, key_name)
        if target is None or not target.is_file():
            return None
        bucket = backend.get_bucket(bucket_name)
        key = FakeKey(
            name=key_name,
            value=target.read_bytes(),
            account_id=bucket.account_id,
            region_name=bucket.region_name,
            bucket_name=bucket_name,
        )
        key.last_modified = datetime.datetime.fromtimestamp(
            target.stat().st_mtime, tz=datetime.UTC
        ).replace(tzinfo=None)
        return key


def etag_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as data:
        while block := data.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------- 2. map children's events
def _discarding_event_manager() -> type:
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

    class DiscardingEventManager(EventManager):
        """The events of a Distributed Map's children: numbered, logged if logging is on,
        not kept (nothing reads them: moto shows no child executions)."""

        def _publish_history_event(self, *args: Any, **kwargs: Any) -> None:
            return None

    return DiscardingEventManager


# ---------------------------------------------------------------------- 3. items, read lazily
class JsonArrayFile(Sequence[Any]):
    """A JSON array in a file, one element a line (`[a,\\nb,\\nc]`), parsed an element at a
    time; `open_array` falls back to parsing the whole file for any other layout."""

    def __init__(self, path: Path, starts: array, ends: array, source: Any = None) -> None:
        self.path = path
        self._starts = starts
        self._ends = ends
        # (file, lock), shared by slices: the file may be unlinked once opened
        self._source = source or (path.open("rb"), threading.Lock())

    def __len__(self) -> int:
        return len(self._starts)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return JsonArrayFile(self.path, self._starts[index], self._ends[index], self._source)
        start, end = self._starts[index], self._ends[index]
        file, lock = self._source
        with lock:
            file.seek(start)
            data = file.read(end - start)
        return json.loads(data)

    def __iter__(self) -> Iterator[Any]:
        for index in range(len(self)):
            yield self[index]

    def close(self) -> None:
        self._source[0].close()


def open_array(path: Path) -> Any:
    """The JSON array in `path`: lazily when it is one element a line, else parsed whole."""
    starts, ends = array("q"), array("q")
    offset = 0
    with path.open("rb") as data:
        for number, line in enumerate(data):
            begin, stop = offset, offset + len(line)
            offset = stop
            text = line.rstrip(b"\r\n \t")
            if number == 0:
                if not text.startswith(b"["):
                    return _parse_whole(path)
                text, begin = text[1:], begin + 1
            if text.endswith(b"]"):
                text = text[:-1]
            if text.endswith(b","):
                text = text[:-1]
            if not text.strip():
                continue
            try:
                json.loads(text)
            except ValueError:
                return _parse_whole(path)
            starts.append(begin)
            ends.append(begin + len(text))
    return JsonArrayFile(path, starts, ends)


def _parse_whole(path: Path) -> Any:
    with path.open("rb") as data:
        return json.load(data)


class _SpooledBody:
    """The ItemReader's object, streamed to a file (in place of moto's one big string)."""

    def __init__(self, path: Path) -> None:
        self.path = path


def _lazy_item_reader(work: Path) -> tuple[Any, Any]:
    """Replacements for the ItemReader's S3 GetObject and its JSON transformer."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval import (
        resource_eval_s3,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_output_transformer import (  # noqa: E501
        transformer_json,
    )

    read_body = resource_eval_s3.ResourceEvalS3._handle_get_object
    transform = transformer_json.ResourceOutputTransformerJson._eval_body

    def handle_get_object(env: Any, resource_runtime_part: Any, state_credentials: Any) -> None:
        s3 = resource_eval_s3.ResourceEvalS3._get_s3_client(
            resource_runtime_part=resource_runtime_part, state_credentials=state_credentials
        )
        parameters = env.stack.pop()
        body = s3.get_object(**parameters)["Body"]
        work.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=work, prefix="items-", delete=False) as spool:
            for block in iter(lambda: body.read(1 << 20), b""):
                spool.write(block)
        env.stack.append(_SpooledBody(Path(spool.name)))

    def eval_body(self: Any, env: Any) -> None:
        reader_config = env.stack[-1]
        body = env.stack[-2]
        if not isinstance(body, _SpooledBody):
            transform(self, env)
            return
        env.stack.pop()
        env.stack.pop()
        items = open_array(body.path)
        if not isinstance(items, JsonArrayFile):
            body.path.unlink(missing_ok=True)
            if not isinstance(items, list):  # moto's own answer for a non-array
                env.stack.append(json.dumps(items))
                env.stack.append(reader_config)
                transform(self, env)
                return
        else:
            body.path.unlink(missing_ok=True)  # the open file keeps its data until closed
        env.stack.append(items[: reader_config["MaxItemsValue"]])

    return (read_body, transform), (handle_get_object, eval_body)


def _lazy_job_pool() -> tuple[Any, Any]:
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import job

    saved = (job.JobPool.__init__, job.JobPool.next_job)

    def __init__(self: Any, job_program: Any, job_inputs: Sequence[Any]) -> None:
        self._mutex = threading.Lock()
        self._termination_event = threading.Event()
        self._worker_exception = None
        self._jobs_number = len(job_inputs)
        self._inputs = job_inputs
        self._program = job_program
        self._next_index = 0
        self._open_jobs = []
        self._closed_jobs = set()

    def next_job(self: Any) -> Any:
        with self._mutex:
            if self._worker_exception is not None or self._next_index >= self._jobs_number:
                return None
            index = self._next_index
            self._next_index += 1
        return job.Job(job_index=index, job_program=self._program, job_input=self._inputs[index])

    return saved, (__init__, next_job)


_CLIENT_MODULES = (
    "state_map.result_writer.resource_eval.resource_eval_s3",
    "state_map.item_reader.eval.resource_eval_s3",
    "state_task.lambda_eval_utils",
    "state_task.service.state_task_service_aws_sdk",
    "state_task.service.state_task_service_sfn",
)


def _cached_clients() -> Any:
    """moto's `boto_client_for`, one client per region, service and role instead of a new one
    per task: each new client cost ~20 ms of CPU and left its generated class behind
    (botocore makes a client class per client; ~15 KB a creator stayed)."""
    from moto.stepfunctions.parser.asl.utils import boto_client

    made: dict[tuple[str, str, str], Any] = {}
    lock = threading.Lock()

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        key = (region, service, repr(state_credentials))
        with lock:
            if key not in made:
                made[key] = boto_client.boto_client_for(region, service, state_credentials)
            return made[key]

    return boto_client_for


_THREAD_MODULES = (
    "moto.stepfunctions.parser.utils",
    "moto.stepfunctions.parser.asl.component.program.program",
    "moto.stepfunctions.parser.asl.component.state.exec.execute_state",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration."
    "inline_iteration_component",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service."
    "state_task_service_callback",
    "moto.stepfunctions.parser.asl.component.state.exec.state_parallel.branch_worker",
    "moto.stepfunctions.parser.backend.execution_worker",
)


class _LiveThreads(list):
    """moto's TMP_THREADS (every thread its engine started, kept for good), keeping the
    threads still running: a finished task's thread held its whole evaluation frame."""

    def append(self, thread: Any) -> None:
        if len(self) >= 256:
            self[:] = [t for t in self if t.is_alive()]
        super().append(thread)


class _Untracked(list):
    """moto's `instances_tracked` that keeps nothing (see BoundedEngine)."""

    def append(self, item: Any) -> None:
        return None


def _iterating_pool() -> Any:
    """The map worker's loop over its jobs, as a loop: moto's recurses once per item, so each
    worker's stack kept every item it had run (and its frames) until the map ended. After each
    job the map run's failures are held to its tolerance, as AWS holds them (map_tolerance)."""
    from collage_tools.map_tolerance import past_tolerance, threshold_exceeded

    def _eval_pool(self: Any, job: Any, worker_frame: Any) -> None:
        while True:
            if job is None:
                self._env.delete_frame(worker_frame)
                return
            job_frame = worker_frame.open_inner_frame()
            self._eval_job(env=job_frame, job=job)
            worker_frame.delete_frame(job_frame)
            if past_tolerance(self._map_run_record, self._job_pool._jobs_number):
                job.job_output = threshold_exceeded(worker_frame)  # the pool stops on it
            if isinstance(job.job_output, Exception) or self.stopped():
                self._env.delete_frame(worker_frame)
                self._job_pool.close_job(job)
                return
            next_job = self._job_pool.next_job()
            if next_job is None:
                # The frame is closed before the job, as moto does: the map waits for jobs.
                self._env.delete_frame(worker_frame)
                self._job_pool.close_job(job)
                return
            self._job_pool.close_job(job)
            job = next_job

    return _eval_pool


class BoundedEngine:
    """Patches 2 and 3 on moto's Step Functions engine, and the S3 models' instance registry,
    undone by `uninstall`.

    moto registers every model instance it ever makes (`BaseModel.instances_tracked`, for its
    dashboard and reset): each object's FakeKey, its ACL and grants stayed alive after the
    object itself was forgotten (~6 KB a key). Here they are not registered; a reset still
    disposes every key it holds through the buckets."""

    def __init__(self, work: Path | None = None) -> None:
        self.work = work or Path(tempfile.gettempdir())
        self._undo: list[tuple[Any, str, Any]] = []

    def _set(self, owner: Any, name: str, value: Any) -> None:
        # A class's own attribute as stored (a staticmethod stays one when put back).
        saved = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        self._undo.append((owner, name, saved))
        setattr(owner, name, value)

    def install(self) -> BoundedEngine:
        from moto.s3 import models as s3_models
        from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval import (
            resource_eval_s3,
        )
        from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_output_transformer import (  # noqa: E501
            transformer_json,
        )
        from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
            distributed_iteration_component,
            job,
        )

        for model in (s3_models.FakeKey, s3_models.FakeAcl, s3_models.FakeGrant):
            self._set(model, "instances_tracked", _Untracked())
        self._set(s3_models.FakeGrantee, "instances_tracked", _Untracked())  # one per ACL
        self._set(distributed_iteration_component, "EventManager", _discarding_event_manager())
        from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (  # noqa: E501
            distributed_item_processor_worker as worker,
        )

        self._set(worker.DistributedItemProcessorWorker, "_eval_pool", _iterating_pool())
        import importlib

        live = _LiveThreads()
        for name in _THREAD_MODULES:
            module = importlib.import_module(name)
            if hasattr(module, "TMP_THREADS"):
                self._set(module, "TMP_THREADS", live)
        # A JSONPath is parsed once (jsonpath_ng builds a parser for every parse(): ~3 KB
        # kept and a few ms of CPU a state).
        from moto.stepfunctions.parser.asl.component.common.path import result_path
        from moto.stepfunctions.parser.asl.utils import json_path

        for module in (json_path, result_path):
            self._set(module, "parse", functools.lru_cache(maxsize=4096)(module.parse))
        cached = _cached_clients()
        base = "moto.stepfunctions.parser.asl.component.state.exec."
        for name in _CLIENT_MODULES:
            self._set(importlib.import_module(base + name), "boto_client_for", cached)
        _, (handle_get_object, eval_body) = _lazy_item_reader(self.work)
        self._set(
            resource_eval_s3.ResourceEvalS3, "_handle_get_object", staticmethod(handle_get_object)
        )
        self._set(transformer_json.ResourceOutputTransformerJson, "_eval_body", eval_body)
        _, (init, next_job) = _lazy_job_pool()
        self._set(job.JobPool, "__init__", init)
        self._set(job.JobPool, "next_job", next_job)
        return self

    def uninstall(self) -> None:
        while self._undo:
            owner, name, value = self._undo.pop()
            setattr(owner, name, value)
