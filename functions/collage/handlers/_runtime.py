"""What every handler shares: Powertools Logger, Tracer and Metrics, and the function's settings."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from aws_lambda_powertools import Logger, Metrics, Tracer

# Logs go to stderr (CloudWatch captures both streams), so a local `collage run` keeps stdout
# for its JSON summary.
logger = Logger(logger_handler=__import__("logging").StreamHandler(sys.stderr))
tracer = Tracer()
# The template sets POWERTOOLS_METRICS_NAMESPACE; the default keeps a handler imported without
# it (a test, a local run) from failing every later flush with "Must contain a metric namespace".
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "TikTokCoverCollage")


@dataclass(frozen=True)
class Settings:
    input_bucket: str
    output_bucket: str
    temp_bucket: str
    state_machine_arn: str
    allowed_host_suffixes: tuple[str, ...]
    allow_loopback: bool


def settings() -> Settings:
    env = os.environ
    suffixes = tuple(
        s.strip().lower() for s in env.get("ALLOWED_HOST_SUFFIXES", "").split(",") if s.strip()
    )
    # Loopback downloads exist for local runs only: never inside a Lambda runtime, whatever is set.
    in_lambda = bool(env.get("AWS_LAMBDA_FUNCTION_NAME"))
    return Settings(
        input_bucket=env.get("INPUT_BUCKET", ""),
        output_bucket=env.get("OUTPUT_BUCKET", ""),
        temp_bucket=env.get("TEMP_BUCKET", ""),
        state_machine_arn=env.get("STATE_MACHINE_ARN", ""),
        allowed_host_suffixes=suffixes,
        allow_loopback=env.get("COLLAGE_ALLOW_LOOPBACK") == "1" and not in_lambda,
    )
