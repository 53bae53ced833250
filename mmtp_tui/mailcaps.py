"""The user's mailcap (RFC 1524): which command views an attachment of a given type.

Python's own `mailcap` module is deprecated (gone in 3.13) and builds shell commands from
whatever it is given, so this is a small bounded reader of the subset people use:
`type/subtype; command %s; flags` lines, `\\` continuations, `#` comments, `type/*` and `*`
wildcards, the `test=` field (run, bounded, to pick the entry) and the `copiousoutput` and
`needsterminal` flags. Files come from $MAILCAPS, else ~/.mailcap, /etc/mailcap,
/usr/etc/mailcap, /usr/local/etc/mailcap; the first entry that fits and passes its test wins.

The command is the user's own (trusted); what fills it in is not: the file path is ours
(a private temporary folder, a name we built) and the type is checked against the token
grammar, and both are shell-quoted all the same. Plain module: no Textual.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

MAX_FILE = 256 * 1024  # bytes of one mailcap file read; the rest is ignored
MAX_ENTRIES = 2000  # entries kept from all files together
MAX_ENTRY = 8 * 1024  # characters of one entry, continuations joined
TEST_TIMEOUT = 5.0
MAX_OUTPUT = 512 * 1024  # bytes of a copiousoutput command's output shown
DEFAULT_PATH = ("~/.mailcap", "/etc/mailcap", "/usr/etc/mailcap", "/usr/local/etc/mailcap")

_TOKEN = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}")
_PARAM = re.compile(r"%\{[^}]{0,64}\}")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Entry:
    type: str  # "image/png", "image/*" or "*/*"
    command: str
    copiousoutput: bool = False
    needsterminal: bool = False
    test: str | None = None


def search_path(environ: dict[str, str] | None = None) -> list[Path]:
    """Where mailcap files are looked for, in order (RFC 1524 Appendix A)."""
    env = os.environ if environ is None else environ
    listed = env.get("MAILCAPS")
    names = [n for n in listed.split(":") if n] if listed else list(DEFAULT_PATH)
    return [Path(n).expanduser() for n in names]


def clean_type(content_type: object) -> str:
    """The sender's content type as a bare `type/subtype`, or application/octet-stream when
    it is not one (it is going to be put in a command line)."""
    bare = str(content_type or "").split(";", 1)[0].strip().lower()
    return bare if _TYPE.fullmatch(bare) else "application/octet-stream"


def _split_fields(line: str) -> list[str]:
    """Fields on unescaped `;` (a `\\;` stays in the field, escaped, for `_fill`)."""
    fields, current, escaped = [], [], False
    for ch in line:
        if escaped:
            current.append("\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ";":
            fields.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    fields.append("".join(current).strip())
    return fields


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        if raw.endswith("\\") and not raw.endswith("\\\\"):
            pending += raw[:-1]
        else:
            lines.append(pending + raw)
            pending = ""
    if pending:
        lines.append(pending)
    return lines


def parse(text: str) -> list[Entry]:
    """The entries of one mailcap file's text; lines that make no sense are skipped."""
    entries: list[Entry] = []
    for line in _logical_lines(text):
        line = line.strip()
        if not line or line.startswith("#") or len(line) > MAX_ENTRY:
            continue
        fields = _split_fields(line)
        if len(fields) < 2 or not fields[1]:
            continue
        kind = fields[0].lower()
        if kind == "*":
            kind = "*/*"
        elif "/" not in kind:
            kind += "/*"  # RFC 1524: a bare "text" means text/*
        main, _, sub = kind.partition("/")
        if not (re.fullmatch(_TOKEN, main) or main == "*") or not (
            re.fullmatch(_TOKEN, sub) or sub == "*"
        ):
            continue
        flags = {f.lower() for f in fields[2:] if "=" not in f}
        test = None
        for field in fields[2:]:
            name, eq, value = field.partition("=")
            if eq and name.strip().lower() == "test":
                test = value.strip()
        entries.append(
            Entry(
                type=kind,
                command=fields[1],
                copiousoutput="copiousoutput" in flags,
                needsterminal="needsterminal" in flags,
                test=test,
            )
        )
    return entries


def load(paths: list[Path] | None = None) -> list[Entry]:
    """Every entry of every readable file on the search path, in order (bounded)."""
    entries: list[Entry] = []
    for path in search_path() if paths is None else paths:
        try:
            with path.open("rb") as fh:
                data = fh.read(MAX_FILE)
        except OSError:
            continue
        entries += parse(data.decode("utf-8", errors="replace"))
        if len(entries) >= MAX_ENTRIES:
            return entries[:MAX_ENTRIES]
    return entries


def fits(entry: Entry, content_type: str) -> bool:
    main = content_type.split("/", 1)[0]
    return entry.type in (content_type, f"{main}/*", "*/*")


def _fill(template: str, path: Path | None, content_type: str) -> str:
    """The shell command: %s the quoted path, %t the quoted (checked) type, %{param} and
    the multipart codes empty, %% a percent sign, \\x the character x."""
    out: list[str] = []
    i = 0
    while i < len(template):
        ch = template[i]
        nxt = template[i + 1] if i + 1 < len(template) else ""
        if ch == "\\" and nxt:
            out.append(nxt)
            i += 2
        elif ch == "%" and nxt == "s":
            out.append(shlex.quote(str(path)) if path is not None else "")
            i += 2
        elif ch == "%" and nxt == "t":
            out.append(shlex.quote(content_type))
            i += 2
        elif ch == "%" and nxt == "%":
            out.append("%")
            i += 2
        elif ch == "%" and nxt == "{":
            found = _PARAM.match(template, i)
            i = found.end() if found else i + 2
        elif ch == "%" and nxt in ("n", "F"):
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _passes(entry: Entry, content_type: str) -> bool:
    if not entry.test:
        return True
    try:
        done = subprocess.run(
            ["/bin/sh", "-c", _fill(entry.test, None, content_type)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=TEST_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def find(content_type: object, entries: list[Entry] | None = None) -> Entry | None:
    """The first entry that fits `content_type` and passes its test; None: no mailcap
    entry (the configured opener is used)."""
    kind = clean_type(content_type)
    for entry in load() if entries is None else entries:
        if fits(entry, kind) and _passes(entry, kind):
            return entry
    return None


@dataclass
class Command:
    """An entry made ready for one file: a shell command line, and whether the file goes
    on its standard input (an entry without %s)."""

    line: str
    stdin: Path | None
    entry: Entry


def command_for(entry: Entry, path: Path, content_type: object) -> Command:
    kind = clean_type(content_type)
    uses_path = "%s" in entry.command.replace("%%", "")
    return Command(_fill(entry.command, path, kind), None if uses_path else path, entry)


def run(
    command: Command, *, timeout: float = 60.0, capture: bool = False
) -> tuple[int | None, str]:
    """Run it (blocking): (exit status or None if it did not run, the output when
    `capture`, cut at MAX_OUTPUT). Without `capture` its output is dropped."""
    try:
        stdin = command.stdin.open("rb") if command.stdin is not None else subprocess.DEVNULL
    except OSError:
        return None, ""
    try:
        done = subprocess.run(
            ["/bin/sh", "-c", command.line],
            stdin=stdin,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if capture else subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None, ""
    finally:
        if not isinstance(stdin, int):
            stdin.close()
    output = done.stdout[:MAX_OUTPUT].decode("utf-8", errors="replace") if capture else ""
    return done.returncode, output


def run_in_terminal(command: Command) -> int | None:
    """Run a `needsterminal` entry on the terminal (the caller has given it up)."""
    try:
        stdin = command.stdin.open("rb") if command.stdin is not None else None
    except OSError:
        return None
    try:
        return subprocess.call(["/bin/sh", "-c", command.line], stdin=stdin)
    except OSError:
        return None
    finally:
        if stdin is not None:
            stdin.close()


def temp_name(sender_name: object, content_type: object) -> str:
    """The name for the file a command opens, built here from safe characters only (the
    sender's name keeps its letters, digits, `.`, `_`, `-`; never a leading dot or dash)."""
    raw = str(sender_name or "")
    raw = raw.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, ext = raw.rpartition(".")
    if not dot:
        stem, ext = raw, ""
    stem = _UNSAFE_NAME.sub("_", stem).lstrip("._-")[:60] or "attachment"
    ext = _UNSAFE_NAME.sub("", ext)[:12].lstrip("._-")
    if not ext:
        ext = {"text/plain": "txt", "text/html": "html"}.get(clean_type(content_type), "")
    return f"{stem}.{ext}" if ext else stem
