"""`mmtp-tui`: the terminal mail client. Startup errors are one plain line, no traceback."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmtp-tui",
        description="MMTP mail in the terminal. The first run sets up an account; with "
        "'Run a local server for me' nothing needs configuring. Over SSH use `ssh -t`.",
    )
    parser.add_argument("--no-mouse", action="store_true", help="ignore the mouse")
    parser.add_argument(
        "--low-bandwidth",
        action="store_true",
        help="for slow links: fewer screen updates, no animations",
    )
    parser.add_argument("--account", metavar="NAME", help="use this configured account")
    parser.add_argument("--config", metavar="PATH", type=Path, help="settings file (TOML)")
    parser.add_argument("--theme", choices=("dark", "light"), help="colour theme")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.low_bandwidth:
        # Read by Textual when it is imported: fewer frames, no animations.
        os.environ.setdefault("TEXTUAL_FPS", "8")
        os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
    from mmtp_proto.errors import LocalError, MMTPError

    from . import config

    try:
        settings = config.load(args.config)
        from .app import MailApp

        app = MailApp(
            settings,
            account=args.account,
            theme=args.theme,
            low_bandwidth=True if args.low_bandwidth else None,
        )
    except (LocalError, MMTPError, OSError) as exc:
        print(f"mmtp-tui: error: {exc}", file=sys.stderr)
        return 2
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        # Without a terminal Textual would write escape codes into the void and wait
        # forever for keys that never come.
        print(
            "mmtp-tui: error: this needs a terminal (stdin and stdout must be a tty); "
            "over SSH use `ssh -t`",
            file=sys.stderr,
        )
        return 2
    app.run(mouse=not args.no_mouse and settings.mouse)
    return app.return_code or 0


if __name__ == "__main__":
    sys.exit(main())
