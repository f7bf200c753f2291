"""`collage`: the local tools of the collage processor (run, render, export-urls)."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module under collage.commands, one-line help)
COMMANDS = {
    "run": ("run", "run the whole workflow on an embedded local AWS (no account needed)"),
    "render": ("render", "build one collage from local files and/or URLs"),
    "export-urls": ("export_urls", "export cover URLs from a database into the workflow's CSV"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="collage", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"collage.commands.{module_name}")
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
