"""Headers editable in $EDITOR, as aerc does: a To/Cc/Subject block above the body, a blank
line, then the body; read back after the editor closes. Plain module: no Textual."""

from __future__ import annotations

from dataclasses import dataclass

FIELDS = ("To", "Cc", "Subject")


@dataclass
class Edited:
    to: list[str]
    cc: list[str]
    subject: str
    body: str


def split_addresses(text: str) -> list[str]:
    """`a, b,c` → ["a", "b", "c"] (blanks dropped)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def render(to: list[str], cc: list[str], subject: str, body: str) -> str:
    return f"To: {', '.join(to)}\nCc: {', '.join(cc)}\nSubject: {subject}\n\n{body}"


def parse(text: str) -> Edited:
    """Read the block back. Lines up to the first blank one are headers when they look like
    `Name: value` for a known name; anything else there starts the body (a user who
    deleted the block keeps all they wrote as the body)."""
    values: dict[str, str] = {}
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.strip() == "":
            index += 1
            break
        name, colon, value = line.partition(":")
        if not colon or name.strip().title() not in FIELDS:
            break
        values[name.strip().title()] = value.strip()
        index += 1
    if not values:
        return Edited([], [], "", text)
    return Edited(
        to=split_addresses(values.get("To", "")),
        cc=split_addresses(values.get("Cc", "")),
        subject=values.get("Subject", ""),
        body="\n".join(lines[index:]),
    )
