"""Opening an attachment through the user's mailcap (RFC 1524 subset): the parser, the
search path, the quoting of what fills a command in, and the app running the command."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_tui_app import SIZE, settle, wait_for_screen
from test_tui_compose import notes, wait_until
from test_tui_features import app_with, open_main, put

from mmtp_proto.packet import make_attachment
from mmtp_tui import config, mailcaps
from mmtp_tui.mailstore import MailStore
from mmtp_tui.screens.pager import PagerScreen
from mmtp_tui.session import default_store_path

SAMPLE = r"""
# a comment, then blank lines

text/plain; less %s; needsterminal
image/png; feh %s; test=test -n "$DISPLAY"
image/*; viewer --title=%t %s
application/pdf; \
    zathura %s; description="PDF"
text/x-log; cat %s; copiousoutput
audio; play %s
*; echo %% done \; really
broken line without a command
bad type/x y; nothing
"""


def test_the_parser_reads_the_subset_people_use():
    entries = mailcaps.parse(SAMPLE)
    assert [(e.type, e.command) for e in entries] == [
        ("text/plain", "less %s"),
        ("image/png", "feh %s"),
        ("image/*", "viewer --title=%t %s"),
        ("application/pdf", "zathura %s"),
        ("text/x-log", "cat %s"),
        ("audio/*", "play %s"),
        ("*/*", r"echo %% done \; really"),
    ]
    assert entries[0].needsterminal and not entries[0].copiousoutput
    assert entries[1].test == 'test -n "$DISPLAY"'
    assert entries[4].copiousoutput


def test_the_first_entry_that_fits_and_passes_its_test_wins(tmp_path):
    entries = mailcaps.parse(
        "image/png; first %s; test=false\nimage/*; second %s; test=true\n*; last %s\n"
    )
    assert mailcaps.find("image/png", entries).command == "second %s"
    assert mailcaps.find("IMAGE/GIF; name=x", entries).command == "second %s"
    assert mailcaps.find("application/zip", entries).command == "last %s"
    assert mailcaps.find("text/plain", mailcaps.parse("image/*; v %s")) is None


def test_the_search_path_is_mailcaps_else_the_rfc_default(tmp_path, monkeypatch):
    monkeypatch.setenv("MAILCAPS", f"{tmp_path}/a:{tmp_path}/b")
    assert mailcaps.search_path() == [tmp_path / "a", tmp_path / "b"]
    monkeypatch.delenv("MAILCAPS")
    paths = mailcaps.search_path()
    assert paths[0] == Path.home() / ".mailcap" and Path("/etc/mailcap") in paths
    (tmp_path / "a").write_text("text/plain; from-a %s\n")
    (tmp_path / "b").write_text("text/plain; from-b %s\nimage/*; from-b %s\n")
    monkeypatch.setenv("MAILCAPS", f"{tmp_path}/missing:{tmp_path}/a:{tmp_path}/b")
    assert mailcaps.find("text/plain").command == "from-a %s"
    assert mailcaps.find("image/png").command == "from-b %s"


def test_a_huge_mailcap_is_read_only_so_far(tmp_path):
    path = tmp_path / "mailcap"
    line = "text/plain; cat %s\n"
    path.write_text(line * (mailcaps.MAX_FILE // len(line) + 100))
    assert len(mailcaps.load([path])) <= mailcaps.MAX_FILE // len(line) + 1


def test_what_fills_a_command_in_is_quoted_and_the_type_checked(tmp_path):
    (entry,) = mailcaps.parse("*; show --type=%t %{charset} %s 100%%\n")
    path = tmp_path / "dir with space" / "a.txt"
    command = mailcaps.command_for(entry, path, "text/plain; charset=`reboot`")
    assert command.line == f"show --type=text/plain  '{path}' 100%"
    hostile = mailcaps.command_for(entry, path, "text/plain$(reboot)")
    assert "--type=application/octet-stream" in hostile.line
    (stdin_entry,) = mailcaps.parse("text/plain; wc -c\n")
    assert mailcaps.command_for(stdin_entry, path, "text/plain").stdin == path


@pytest.mark.parametrize(
    ("sender_name", "built"),
    [
        ("report.pdf", "report.pdf"),
        ("$(touch pwned)'; rm -rf ~ #.txt", "touch_pwned____rm_-rf____.txt"),
        ("../../.bashrc", "attachment.bashrc"),
        ("-rf", "rf"),
        ("notes", "notes"),
        ("", "attachment"),
        ("\u202egpj.exe", "gpj.exe"),
    ],
)
def test_the_file_name_is_built_from_safe_characters(sender_name, built):
    assert mailcaps.temp_name(sender_name, "application/octet-stream") == built


def test_a_hostile_name_never_reaches_the_shell(tmp_path):
    """The mailcap command runs in a shell: the path in it is ours and quoted."""
    marker = tmp_path / "marker"
    (entry,) = mailcaps.parse(f"text/plain; cp %s {marker}\n")
    folder = tmp_path / "open dir; touch pwned1 $(touch pwned2)"
    folder.mkdir()
    name = mailcaps.temp_name(f"$(touch {tmp_path}/pwned2);`touch pwned3`.txt", "text/plain")
    path = folder / name
    path.write_bytes(b"payload")
    status, _ = mailcaps.run(mailcaps.command_for(entry, path, "text/plain"))
    assert status == 0 and marker.read_bytes() == b"payload"
    assert not list(tmp_path.glob("pwned*")) and not list(Path.cwd().glob("pwned*"))


def test_copiousoutput_is_captured_and_bounded(tmp_path):
    path = tmp_path / "a.log"
    path.write_text("line one\n")
    (entry,) = mailcaps.parse("text/x-log; cat %s; copiousoutput\n")
    status, output = mailcaps.run(mailcaps.command_for(entry, path, "text/x-log"), capture=True)
    assert status == 0 and output == "line one\n"


def test_the_mailcap_setting_round_trips(tmp_path):
    settings = config.Settings(path=tmp_path / "tui.toml", mailcap=False)
    settings.save()
    assert config.load(tmp_path / "tui.toml").mailcap is False
    assert config.load(tmp_path / "nothing.toml").mailcap is True


# ---------------------------------------------------------------- in the app


def marker_script(tmp_path: Path) -> Path:
    script = tmp_path / "mark.py"
    script.write_text(
        "import shutil, sys\nshutil.copy(sys.argv[1], sys.argv[2])\n", encoding="utf-8"
    )
    return script


async def test_the_app_opens_an_attachment_with_the_home_mailcap(
    server, tui_settings, tmp_path, monkeypatch
):
    monkeypatch.delenv("MAILCAPS", raising=False)
    marker = tmp_path / "marker"
    script = marker_script(tmp_path)
    (Path.home() / ".mailcap").write_text(
        f"text/plain; {sys.executable} {script} %s {marker}\n", encoding="utf-8"
    )
    store = MailStore(default_store_path())
    put(store, "m", attachments=[make_attachment("$(touch x); y.txt", b"hello", "text/plain")])
    fallback = tmp_path / "fallback"
    app = app_with(server, tui_settings, store, open_command=f"touch {fallback}")
    async with app.run_test(size=SIZE) as pilot:
        await open_main(app, pilot)
        await pilot.press("v")
        await settle(app, pilot)
        await wait_until(pilot, marker.exists)
    assert marker.read_bytes() == b"hello"
    assert not fallback.exists()
    assert not any(p.name == "x" for p in Path.cwd().iterdir())


async def test_the_app_falls_back_to_the_opener_and_pages_copious_output(
    server, tui_settings, tmp_path, monkeypatch
):
    mailcap = tmp_path / "mailcap"
    mailcap.write_text("text/x-log; cat %s; copiousoutput\n", encoding="utf-8")
    monkeypatch.setenv("MAILCAPS", str(mailcap))
    copy = tmp_path / "opened"
    script = tmp_path / "open.py"
    script.write_text("import shutil, sys\nshutil.copy(sys.argv[-1], sys.argv[1])\n")
    store = MailStore(default_store_path())
    put(store, "a", attachments=[make_attachment("a.bin", b"\x00raw", "application/x-thing")])
    put(store, "b", attachments=[make_attachment("b.log", b"[bold]log[/] line", "text/x-log")])
    app = app_with(server, tui_settings, store, open_command=f"{sys.executable} {script} {copy}")
    async with app.run_test(size=SIZE) as pilot:
        main = await open_main(app, pilot)
        subjects = [m.subject for m in main.shown]
        main.query_one("#messages").move_cursor(row=subjects.index("a"))
        await pilot.pause()
        await pilot.press("v")
        await settle(app, pilot)
        await wait_until(pilot, copy.exists)
        assert copy.read_bytes() == b"\x00raw"  # no mailcap entry: the opener
        main.query_one("#messages").move_cursor(row=subjects.index("b"))
        await pilot.pause()
        await pilot.press("v")
        pager = await wait_for_screen(app, pilot, PagerScreen)
        await pilot.pause()
        shown = str(pager.query_one("#pager-text").render())
        assert shown == "[bold]log[/] line"  # the output as it is: never markup
        await pilot.press("q")
        await pilot.pause()
        assert not isinstance(app.screen, PagerScreen)
        assert not any("Could not run" in n for n in notes(app)), notes(app)
