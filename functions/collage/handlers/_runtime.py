"""What every handler shares: Powertools Logger, Tracer and Metrics, and what it is wired with.

A handler module builds its handler once, at cold start, from `Runtime.from_environment()`
(the template's variables); tools and tests build a `Runtime` of their own and call the same
`make_handler` with it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer

from collage.aws import Store
from collage.config import ProcessingConfig, config_from_env
from collage.contracts import MapSettings
from collage.engine.url_guard import AddressGuard

# Logs go to stderr (CloudWatch captures both streams), so a local `collage run` keeps stdout
# for its JSON summary.
logger = Logger(logger_handler=logging.StreamHandler(sys.stderr))
tracer = Tracer()
# The namespace comes from POWERTOOLS_METRICS_NAMESPACE, which the template sets.
metrics = Metrics()

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass(frozen=True)
class Runtime:
    """The AWS layer, the stack's resource names, the SSRF policy and the stack's settings."""

    store: Store = field(default_factory=Store)
    input_bucket: str = ""
    output_bucket: str = ""
    temp_bucket: str = ""
    state_machine_arn: str = ""
    address_guard: AddressGuard = field(default_factory=AddressGuard)
    defaults: ProcessingConfig = field(default_factory=ProcessingConfig)
    map_settings: MapSettings = field(default_factory=lambda: MapSettings())

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Runtime:
        env = os.environ if environ is None else environ
        suffixes = tuple(s for s in env.get("ALLOWED_HOST_SUFFIXES", "").split(",") if s.strip())
        return cls(
            input_bucket=env.get("INPUT_BUCKET", ""),
            output_bucket=env.get("OUTPUT_BUCKET", ""),
            temp_bucket=env.get("TEMP_BUCKET", ""),
            state_machine_arn=env.get("STATE_MACHINE_ARN", ""),
            address_guard=AddressGuard(allowed_host_suffixes=suffixes),
            defaults=config_from_env(env),
            map_settings=MapSettings.from_environment(env),
        )
