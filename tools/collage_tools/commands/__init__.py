"""Subcommands of the `collage` command, one module each.

Each module defines `add_arguments(parser)` and `run(args) -> int`, and imports anything heavy
(boto3, moto, Pillow, SQLAlchemy) inside `run`, so that `collage --help` starts fast.
"""
