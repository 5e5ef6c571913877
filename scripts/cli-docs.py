#!/usr/bin/env python3
"""Write textbackd(8) and the bash completion from the argparse parser the CLI really uses.

    python scripts/cli-docs.py man > textbackd.8
    python scripts/cli-docs.py bash-completion > textbackd

Run it with a Python that can import textbackd (the package build runs it with the
venv it just built). Both outputs come from ``textbackd.cli.build_parser()``, so a
new subcommand or option appears in the manual and the completion without edits here.
Debian's argparse-manpage 1.2.2 cannot write section 8, nor a FILES section.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from textbackd import __version__
from textbackd.cli import build_parser


def roff(text: str) -> str:
    """Plain text made safe for roff: backslashes, hyphens, leading dots and quotes."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in text.splitlines():
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return [(name, helps.get(name, ""), p) for name, p in action.choices.items()]
    return []


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions
            if not isinstance(a, argparse._SubParsersAction) and a.help is not argparse.SUPPRESS]


def option_label(a: argparse.Action) -> str:
    if not a.option_strings:
        return f"\\fI{roff(a.metavar or a.dest)}\\fR"
    takes = a.nargs != 0
    meta = a.metavar or (a.dest.upper() if takes else "")
    if a.choices and takes and not a.metavar:
        meta = "{" + ",".join(str(c) for c in a.choices) + "}"
    parts = []
    for s in a.option_strings:
        parts.append(f"\\fB{roff(s)}\\fR" + (f" \\fI{roff(str(meta))}\\fR" if takes else ""))
    return ", ".join(parts)


def option_help(a: argparse.Action) -> str:
    text = a.help or ""
    if "%(default)" in text:
        text = text % {"default": a.default}
    return roff(text)


def man() -> str:
    parser = build_parser()
    date = time.strftime("%Y-%m-%d", time.gmtime(int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))))
    out = [
        f'.TH TEXTBACKD 8 "{date}" "textbackd {__version__}" "System Administration"',
        ".SH NAME",
        "textbackd \\- text back the callers an office's PBX missed",
        ".SH SYNOPSIS",
        "\\fBtextbackd\\fR [\\fB\\-\\-log\\-level\\fR \\fILEVEL\\fR] \\fICOMMAND\\fR [\\fB\\-c\\fR \\fIFILE\\fR] [\\fIoptions\\fR]",
        ".br",
        "\\fBtextbackd \\-\\-version\\fR",
        ".SH DESCRIPTION",
        roff(parser.description or ""),
        ".PP",
        "\\fBtextbackd run\\fR is the daemon that systemd starts (\\fItextbackd.service\\fR): it watches the "
        "Asterisk Manager Interface or the FreeSWITCH event socket, decides for each missed inbound call "
        "whether to text the caller, and sends the text through a GSM modem or an SMS gateway. Every call, "
        "text, reply and opt\\-out is kept in one SQLite file. The other commands check a setup, read the "
        "store and answer access and erasure requests.",
        ".SH OPTIONS",
    ]
    for a in options(parser):
        out += [".TP", option_label(a), option_help(a)]
    out.append(".SH COMMANDS")
    for name, help_, sub in subcommands(parser):
        out += [".SS " + roff(f"textbackd {name}"), roff(sub.description or help_)]
        for a in options(sub):
            if "-h" in a.option_strings:
                continue
            out += [".TP", option_label(a), option_help(a)]
    out += [
        ".SH FILES",
        ".TP", "\\fI/etc/textbackd/textbackd.toml\\fR",
        "The configuration; \\fBtextbackd check\\-config\\fR says what it understood. "
        "The example with every key is in \\fI/usr/share/doc/textbackd/examples/\\fR.",
        ".TP", "\\fI/etc/textbackd/pbx.secret\\fR",
        "The PBX login secret the package generated (mode 0640, group textbackd).",
        ".TP", "\\fI/var/lib/textbackd/textbackd.db\\fR",
        "The store (SQLite, schema version in \\fBPRAGMA user_version\\fR).",
        ".TP", "\\fI/var/lib/textbackd/backups/\\fR",
        "The copy of the store taken before each package upgrade.",
        ".SH ENVIRONMENT",
        ".TP", "\\fBTEXTBACKD_CONFIG\\fR",
        "The configuration file when \\fB\\-c\\fR is not given.",
        ".TP", "\\fBCREDENTIALS_DIRECTORY\\fR",
        "systemd credentials named like a secret's key path (\\fBpbx.secret\\fR) win over the file.",
        ".SH EXIT STATUS",
        "0 on success, 1 on a bad configuration, input or failed check (one line on standard error), "
        "2 on a usage error.",
        ".SH SEE ALSO",
        "\\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1), \\fBsqlite3\\fR(1); "
        "\\fI/usr/share/doc/textbackd/README.md\\fR",
        "",
    ]
    return "\n".join(out)


def bash_completion() -> str:
    parser = build_parser()
    subs = subcommands(parser)
    top = " ".join(s for a in options(parser) for s in a.option_strings)
    cases = []
    for name, _, sub in subs:
        opts = " ".join(s for a in options(sub) for s in a.option_strings)
        cases.append(f"        {name}) opts='{opts}' ;;")
    names = " ".join(n for n, _, _ in subs)
    return f"""# bash completion for textbackd {__version__}; generated from its argparse parser by scripts/cli-docs.py
_textbackd() {{
    local cur prev cmd opts i
    cur=${{COMP_WORDS[COMP_CWORD]}}
    prev=${{COMP_WORDS[COMP_CWORD-1]}}
    case $prev in
        -c|--config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --log-level) COMPREPLY=($(compgen -W 'debug info warning error' -- "$cur")); return ;;
    esac
    cmd=
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${{COMP_WORDS[i]}} in --log-level) ((i++)) ;; -*) ;; *) cmd=${{COMP_WORDS[i]}}; break ;; esac
    done
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W '{names} {top}' -- "$cur"))
        return
    fi
    case $cmd in
{chr(10).join(cases)}
        *) opts= ;;
    esac
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}}
complete -F _textbackd textbackd
"""


def main(argv: list[str]) -> int:
    what = argv[1] if len(argv) > 1 else ""
    if what == "man":
        sys.stdout.write(man())
    elif what == "bash-completion":
        sys.stdout.write(bash_completion())
    else:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
