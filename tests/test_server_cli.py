"""`mmtp-server` as an operator runs it: config file plus flags, one-line errors, clean stops.

Every test runs the real entry point in a child process (`python -m mmtp_proto.server_cli`)
with its data dir and XDG dirs under tmp_path and ports picked free at run time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from mmtp_proto import server_cli
from mmtp_proto.certs import fingerprint
from mmtp_proto.config import ServerConfig, config_from_mapping

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
FINGERPRINT = re.compile(r"(?:[0-9A-F]{2}:){31}[0-9A-F]{2}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    env = dict(os.environ)
    env["HOME"] = str(home)
    for var, sub in (
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_STATE_HOME", "state"),
    ):
        env[var] = str(home / sub)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "mmtp_proto.server_cli", *map(str, args)]


def run_cli(tmp_path: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run to completion (for runs that must fail before serving)."""
    return subprocess.run(
        command(*args),
        env=cli_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )


class Running:
    """A started `mmtp-server` child whose stderr goes to a file we can poll."""

    def __init__(self, tmp_path: Path, *args: str | Path) -> None:
        self.log_path = tmp_path / f"stderr-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in finish()
        self.proc = subprocess.Popen(
            command(*args),
            env=cli_env(tmp_path),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log())
            if match:
                return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.finish()
        pytest.fail(
            f"no {pattern!r} in the server's log (exit {self.proc.returncode}):\n{self.log()}"
        )

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        finally:
            self.finish()

    def finish(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
        self._log.close()


@pytest.fixture
def running(tmp_path: Path):
    started: list[Running] = []

    def start(*args: str | Path) -> Running:
        child = Running(tmp_path, *args)
        started.append(child)
        return child

    yield start
    for child in started:
        child.finish()


def greeting(port: int, *, tls: bool = False) -> tuple[dict, bytes | None]:
    """The greeting frame on `port`, and the TLS certificate (DER) when `tls`."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        if not tls:
            return json.loads(raw.makefile("rb").readline()), None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the test compares fingerprints instead
        with context.wrap_socket(raw) as conn:
            der = conn.getpeercert(binary_form=True)
            return json.loads(conn.makefile("rb").readline()), der


def assert_clean_error(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "mmtp-server: error:" in line]
    assert error_lines, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


# --- errors before serving ----------------------------------------------------------------


def test_version_is_printed(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--version")
    assert result.returncode == 0
    assert result.stdout.startswith("mmtp-server ")


def test_config_file_that_is_not_toml_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[server\nport = 8025\n")
    result = run_cli(tmp_path, "--config", config, "--data-dir", tmp_path / "data")
    assert_clean_error(result, "not valid TOML", str(config))
    assert result.returncode == 2


def test_unknown_option_in_the_config_file_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "typo.toml"
    config.write_text('[server]\nhots = "0.0.0.0"\n')
    result = run_cli(tmp_path, "--config", config, "--data-dir", tmp_path / "data")
    assert_clean_error(result, "unknown option 'hots'")
    assert result.returncode == 2


def test_invalid_value_in_the_config_file_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "hard.toml"
    config.write_text("difficulty = 99\n")
    result = run_cli(tmp_path, "--config", config, "--data-dir", tmp_path / "data")
    assert_clean_error(result, "difficulty")
    assert result.returncode == 2


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--config", tmp_path / "nowhere.toml")
    assert_clean_error(result, "nowhere.toml does not exist")


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        result = run_cli(
            tmp_path,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-tls",
            "--data-dir",
            tmp_path / "data",
        )
    assert_clean_error(result, f"cannot listen on 127.0.0.1:{port}")


def test_missing_certificate_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli(
        tmp_path,
        "--no-plain",
        "--secure-port",
        str(free_port()),
        "--cert",
        tmp_path / "fullchain.pem",
        "--key",
        tmp_path / "privkey.pem",
        "--data-dir",
        tmp_path / "data",
    )
    assert_clean_error(result, "fullchain.pem does not exist")


def test_interrupt_before_serving_exits_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def interrupted(path: Path) -> ServerConfig:
        raise KeyboardInterrupt

    monkeypatch.setattr(server_cli, "load_config", interrupted)
    assert server_cli.main(["--config", str(tmp_path / "x.toml")]) == 130
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err


# --- a real start and stop ----------------------------------------------------------------


def test_start_logs_the_fingerprint_and_sigterm_stops_cleanly(tmp_path: Path, running) -> None:
    data_dir = tmp_path / "data"
    plain, secure = free_port(), free_port()
    child = running(
        "--host",
        "127.0.0.1",
        "--port",
        str(plain),
        "--secure-port",
        str(secure),
        "--domain",
        "example.com",
        "--difficulty",
        "8",
        "--data-dir",
        data_dir,
    )
    logged = child.wait_for(FINGERPRINT.pattern).group(0)
    child.wait_for(rf"127\.0\.0\.1:{secure}")
    child.wait_for(rf"127\.0\.0\.1:{plain}")

    key = data_dir / "tls" / "server.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    hello, der = greeting(secure, tls=True)
    assert der is not None and fingerprint(der) == logged
    assert hello["domains"] == ["example.com"]
    assert hello["difficulty"] == 8
    log = child.log()
    assert "example.com" in log and str(data_dir) in log

    assert child.stop(signal.SIGTERM) == 0
    assert "Traceback" not in child.log()


def test_sigint_stops_cleanly_too(tmp_path: Path, running) -> None:
    port = free_port()
    child = running("--no-tls", "--port", str(port), "--data-dir", tmp_path / "data")
    child.wait_for(rf"127\.0\.0\.1:{port}")
    greeting(port)
    assert child.stop(signal.SIGINT) == 0
    assert "Traceback" not in child.log()


def _wait_for_file(path: Path, child: Running) -> dict:
    deadline = time.monotonic() + START_TIMEOUT
    while not path.exists():
        if child.proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no ready file (exit {child.proc.returncode}):\n{child.log()}")
        time.sleep(0.05)
    return json.loads(path.read_text())


def test_ready_file_says_where_it_listens_once_it_does(tmp_path: Path, running) -> None:
    ready = tmp_path / "run" / "ready.json"
    ready.parent.mkdir()
    child = running(
        "--port", "0", "--secure-port", "0", "--data-dir", tmp_path / "data", "--ready-file", ready
    )
    info = _wait_for_file(ready, child)
    assert info["pid"] == child.proc.pid
    assert stat.S_IMODE(ready.stat().st_mode) == 0o600
    assert [p.name for p in ready.parent.iterdir()] == ["ready.json"]  # no temp file left
    host, plain = info["plain"]
    _, secure = info["tls"]
    assert host == "127.0.0.1" and plain and secure and plain != secure
    hello, der = greeting(secure, tls=True)
    assert hello["tls"] is True
    assert der is not None and fingerprint(der) == info["fingerprint"]
    assert greeting(plain)[0]["tls"] is False
    assert child.stop(signal.SIGTERM) == 0


def test_ready_file_from_the_config_with_a_listener_off(tmp_path: Path, running) -> None:
    ready = tmp_path / "ready.json"
    config = tmp_path / "mmtp-server.toml"
    config.write_text(f'[server]\nport = 0\ntls = false\nready_file = "{ready}"\n')
    child = running("--config", config, "--data-dir", tmp_path / "data")
    info = _wait_for_file(ready, child)
    assert info["tls"] is None and info["fingerprint"] is None
    assert greeting(info["plain"][1])[0]["status"] == "OK"
    assert child.stop(signal.SIGTERM) == 0


def test_flags_override_the_file_and_the_rest_of_the_file_stays(tmp_path: Path, running) -> None:
    file_port = free_port()
    config = tmp_path / "mmtp-server.toml"
    config.write_text(
        "[server]\n"
        f"port = {file_port}\n"
        "tls = true\n"
        "difficulty = 12\n"
        'domains = ["example.org"]\n'
        f'data_dir = "{tmp_path / "from-file"}"\n'
    )
    child = running("--config", config, "--difficulty", "7", "--no-tls")
    child.wait_for(rf"127\.0\.0\.1:{file_port}")
    hello, _ = greeting(file_port)
    assert hello["difficulty"] == 7  # the flag wins
    assert hello["domains"] == ["example.org"]  # the file's value stays
    assert hello["tls"] is False
    assert (tmp_path / "from-file").is_dir()
    assert not (tmp_path / "from-file" / "tls").exists()  # --no-tls beat tls = true
    assert child.stop() == 0


# --- the operator kit in server/ ----------------------------------------------------------


def test_example_config_has_every_option_and_each_one_loads() -> None:
    text = (REPO / "server" / "mmtp-server.toml").read_text()
    for f in dataclasses.fields(ServerConfig):
        assert re.search(rf"^(?:# )?{f.name} = ", text, re.M), f"{f.name} is not in the example"
    # As shipped, and with every commented-out option switched on, the file is valid.
    config_from_mapping(tomllib.loads(text)["server"]).validate()
    uncommented = re.sub(r"^# ([a-z_]+ = )", r"\1", text, flags=re.M)
    config = config_from_mapping(tomllib.loads(uncommented)["server"]).validate()
    assert config.cert is not None and config.key is not None


def test_systemd_unit_is_sandboxed() -> None:
    unit = (REPO / "server" / "mmtp-server.service").read_text()
    for line in (
        "StateDirectory=mmtp-server",
        "--data-dir /var/lib/mmtp-server",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet=\n",
        "LimitNOFILE=65536",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=",
    ):
        assert line in unit, line


def test_worker_flags_override_the_file(tmp_path: Path) -> None:
    config = tmp_path / "mmtp-server.toml"
    config.write_text(
        "[server]\npgp_workers = 3\nworker_memory_mib = 256\njob_deadline_seconds = 5\n"
    )
    args = server_cli.build_parser().parse_args(
        ["--config", str(config), "--pgp-workers", "4", "--job-deadline-seconds", "1.5"]
    )
    built = server_cli.build_config(args)
    assert (built.pgp_workers, built.worker_memory_mib, built.job_deadline_seconds) == (4, 256, 1.5)


def test_retry_flags_override_the_file_and_are_checked_together(tmp_path: Path) -> None:
    config = tmp_path / "mmtp-server.toml"
    config.write_text("[server]\nretry_base = 30.0\nretry_max = 600.0\n")
    parser = server_cli.build_parser()
    args = parser.parse_args(["--config", str(config), "--retry-max", "90"])
    built = server_cli.build_config(args)
    assert (built.retry_base, built.retry_max) == (30.0, 90.0)
    from mmtp_proto.errors import LocalError

    args = parser.parse_args(["--config", str(config), "--retry-max", "10"])
    with pytest.raises(LocalError, match="at most retry_max"):
        server_cli.build_config(args)


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("pgp_workers", 0, "pgp_workers must be at least 1"),
        ("worker_memory_mib", 16, "worker_memory_mib must be at least 64"),
        ("job_deadline_seconds", 0.0, "job_deadline_seconds must be positive"),
        ("auth_source_failure_limit", 0, "auth_source_failure_limit must be at least 1"),
    ],
)
def test_bad_worker_settings_are_clear_errors(option: str, value: object, words: str) -> None:
    from mmtp_proto.errors import LocalError

    with pytest.raises(LocalError, match=words):
        config_from_mapping({option: value}).validate()
