"""`collage`: the tools around the collage processor (run, serve, submit, watch, render,
export-urls).

This package (tools/) is never deployed; the Lambda functions run `collage` alone."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module under collage_tools.commands, one-line help)
COMMANDS = {
    "run": ("run", "run the whole workflow on an embedded local AWS (no account needed)"),
    "serve": ("serve", "serve the local stack as an AWS endpoint on 127.0.0.1 until Ctrl-C"),
    "submit": ("submit", "start a run on a stack (deployed or served) and follow it"),
    "watch": ("watch", "follow a run that has started, then print its summary"),
    "render": ("render", "build one collage from local files and/or URLs"),
    "export-urls": ("export_urls", "export cover URLs from a database into the workflow's CSV"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with `only` one command's arguments (the others not imported)."""
    parser = argparse.ArgumentParser(prog="collage", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if only in (None, name):
            module = importlib.import_module(f"collage_tools.commands.{module_name}")
            module.add_arguments(command)
            command.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `collage render` starts faster when the other commands' modules are left unloaded.
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(chosen).parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
