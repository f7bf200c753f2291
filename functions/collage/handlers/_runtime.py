"""What every handler shares: Powertools Logger, Tracer and Metrics, and what it is wired with.

A handler module builds its handler once, at cold start, from `Runtime.from_environment(
Environment)`: its own environment model names the variables it reads (the template sets them),
and a missing or empty one fails the cold start with its name, not a run with a blank bucket.
Tools and tests build a `Runtime` of their own and call the same `make_handler` with it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from pydantic import BaseModel, ConfigDict, StringConstraints

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


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class FunctionEnvironment(BaseModel):
    """The variables a function needs, as upper-case fields; a handler subclasses it with its
    own. The stack's settings (COLLAGE_*, MAP_*, ALLOWED_HOST_SUFFIXES) are optional for every
    function and validated by their own models (ProcessingConfig, MapSettings)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class MissingEnvironment(RuntimeError):
    """A function's environment lacks a variable its handler needs."""


def check_environment(
    model: type[FunctionEnvironment], environ: Mapping[str, str]
) -> FunctionEnvironment:
    """The function's variables, or MissingEnvironment naming every missing or empty one."""
    from pydantic import ValidationError

    try:
        return model.model_validate(dict(environ))
    except ValidationError as error:
        names = ", ".join(str(problem["loc"][0]) for problem in error.errors())
        raise MissingEnvironment(
            f"{model.__module__}: environment variable(s) {names} missing or empty "
            "(template.yaml sets them for the function)"
        ) from None


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
    def from_environment(
        cls,
        environment: type[FunctionEnvironment] = FunctionEnvironment,
        environ: Mapping[str, str] | None = None,
    ) -> Runtime:
        """The runtime of a function whose handler reads `environment`'s variables. A name
        the model does not declare stays blank: that handler never reads it."""
        env = os.environ if environ is None else environ
        names = check_environment(environment, env).model_dump()
        suffixes = tuple(s for s in env.get("ALLOWED_HOST_SUFFIXES", "").split(",") if s.strip())
        return cls(
            input_bucket=names.get("INPUT_BUCKET", ""),
            output_bucket=names.get("OUTPUT_BUCKET", ""),
            temp_bucket=names.get("TEMP_BUCKET", ""),
            state_machine_arn=names.get("STATE_MACHINE_ARN", ""),
            address_guard=AddressGuard(allowed_host_suffixes=suffixes),
            defaults=config_from_env(env),
            map_settings=MapSettings.from_environment(env),
        )
