"""Render sections as a console table and as benchmarks/RESULTS.md."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from pathlib import Path

from common import Section, cpu_model


def machine_lines(command: str) -> list[tuple[str, str]]:
    load = "-"
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return [
        ("CPU", cpu_model()),
        ("cores", str(os.cpu_count())),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("date", time.strftime("%Y-%m-%d %H:%M:%S %Z")),
        ("load average at start", load),
        ("command", command),
    ]


def _verdict(met: bool | None) -> str:
    return {True: "MET", False: "MISSED", None: "not measured"}[met]


def _widths(headers: list[str], rows: list[list[str]]) -> list[int]:
    return [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]


def console(sections: list[Section], machine: list[tuple[str, str]]) -> str:
    out: list[str] = []
    for key, value in machine:
        out.append(f"{key + ':':24}{value}")
    for section in sections:
        out.append("")
        out.append(f"== {section.title} ({section.seconds:.0f} s)")
        widths = _widths(section.headers, section.rows)
        line = "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(section.headers, widths, strict=True))
        )
        out.append(line)
        out.append("-" * len(line))
        for row in section.rows:
            out.append(
                "  ".join(
                    c.ljust(w) if i == 0 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(row, widths, strict=True))
                )
            )
        for note in section.notes:
            out.append(f"  note: {note}")
        for t in section.targets:
            out.append(f"  target: {t.name}: {t.measured} (goal {t.goal}) -> {_verdict(t.met)}")
    out.append("")
    out.append("== Targets")
    for section in sections:
        for t in section.targets:
            out.append(f"  [{_verdict(t.met):^12}] {t.name}: {t.measured}")
    return "\n".join(out)


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def markdown(sections: list[Section], machine: list[tuple[str, str]], preamble: str) -> str:
    out = ["# Benchmark results", "", preamble, "", "## Machine", ""]
    out.append(_md_row(["", ""]))
    out.append(_md_row(["---", "---"]))
    for key, value in machine:
        out.append(_md_row([key, f"`{value}`" if key == "command" else value]))
    out += ["", "## Targets", ""]
    out.append(_md_row(["target", "measured", "goal", "verdict"]))
    out.append(_md_row(["---", "---", "---", "---"]))
    for section in sections:
        for t in section.targets:
            out.append(_md_row([t.name.strip(), t.measured, t.goal, f"**{_verdict(t.met)}**"]))
    for section in sections:
        out += ["", f"## {section.title}", "", f"Section time: {section.seconds:.0f} s.", ""]
        out.append(_md_row(section.headers))
        out.append(_md_row(["---"] + ["---:"] * (len(section.headers) - 1)))
        for row in section.rows:
            out.append(_md_row(row))
        if section.notes:
            out.append("")
            for note in section.notes:
                out.append(f"- {note}")
    return "\n".join(out) + "\n"
