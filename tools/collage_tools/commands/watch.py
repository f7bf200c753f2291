"""`collage watch`: follow a run that has started, then print its summary (as `submit` does)."""

from __future__ import annotations

import argparse

from collage_tools.commands.submit import add_stack_arguments, follow_to_summary, say


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("execution", help="the execution's ARN or name")
    add_stack_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from collage_tools.stack_client import CollageStack, StackError, reason_of

    try:
        stack = CollageStack.find(args.stack, endpoint_url=args.endpoint_url, region=args.region)
        execution = stack.execution_arn(args.execution)
        stack.client("stepfunctions").describe_execution(executionArn=execution)
    except StackError as error:
        say(str(error))
        return 1
    except Exception as error:  # ExecutionDoesNotExist, InvalidArn: say which, no traceback
        say(f"execution {args.execution!r}: {reason_of(error)}")
        return 1
    return follow_to_summary(stack, execution, args)
