"""The ``textbackd`` command line.

Each subcommand lives in its own module under ``textbackd/commands/`` and is
found at start-up: a module there defines ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. This file only parses the
common options and dispatches; errors from our hierarchy become one clear line
on stderr and exit status 1 (2 for usage errors, as argparse does).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from textbackd.core.errors import TextbackError


def _command_modules() -> list:
    import textbackd.commands as pkg

    mods = []
    names = {f[:-3] for d in pkg.__path__ for f in os.listdir(d) if f.endswith(".py")}  # not pkgutil: 10 ms
    for name in sorted(names):
        if name.startswith("_"):
            continue
        mod = importlib.import_module(f"textbackd.commands.{name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return mods


class _VersionAction(argparse.Action):
    def __init__(self, option_strings, dest, **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        from textbackd.doctor import version_facts

        f = version_facts()
        print(f"textbackd {f['textbackd']}\n"
              f"store schema {f['schema']}; {f['store']}: {f['store_file']}\n"
              f"Python {f['python']} ({f['python_exe']})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="textbackd",
        description="Texts back the callers your PBX missed. Configuration: "
        "-c FILE, else $TEXTBACKD_CONFIG, else /etc/textbackd/textbackd.toml.",
    )
    parser.add_argument("--version", action=_VersionAction,
                        help="print the version, the store schema it reads and writes, the store file's, and Python's")
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=None,
        help="log level (default: [logging] level in the config, else info)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        if getattr(mod, "USES_CONFIG", True):
            p.add_argument("-c", "--config", metavar="FILE", default=None, help="configuration file")
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except TextbackError as e:
        print(f"textbackd {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
