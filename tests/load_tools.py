"""Helpers for the durability, limits and resilience tests (SPEC §7).

Everything here is real: loopback sockets, TLS, the `mmtp-server` entry point in a child
process, SQLite on disk. `Wire` is the raw client of `wire.py`.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import os
import random
import signal
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from wire import Closed
from wire import Wire as BaseWire

from mmtp_proto import hashcash, openpgp_packets, pgp
from mmtp_proto.message import seal
from mmtp_proto.packet import clear_content, new_message_id, signature_input_of

DIFFICULTY = 6
DOMAINS = ("localhost", "example.com")
RECIPIENT = "(bob)%(example.com)"
# The load's sender, a local user (`register` registers its key too): its packets are signed
# with that key, so that a fresh connection may send them without AUTH (SPEC §3).
LOAD_SENDER = "(load)%(example.com)"
START_TIMEOUT = 30.0


# ---------------------------------------------------------------------------- keys, packets


@functools.cache
def key_for(email: str) -> pgp.PrivateKey:
    """A real Ed25519 OpenPGP key for `email`, made once per test run."""
    return pgp.generate_key(email, email.strip("()").split(")")[0], algorithm="ed25519")


def packet_for(
    recipient: str = RECIPIENT,
    *,
    body: str = "hello",
    subject: str = "load",
    sender: str = LOAD_SENDER,
    bits: int = DIFFICULTY,
) -> dict[str, Any]:
    """An unencrypted packet signed by `sender`'s test key, with a fresh messageId and a
    valid stamp."""
    packet = seal(
        sender=sender,
        recipient=recipient,
        content=clear_content(subject, body),
        sign_with=key_for(sender),
    )
    packet["meta"]["hashcashToken"] = hashcash.mint(
        packet["recipient"], bits, packet["verification"]["messageHash"]
    )
    return packet


def same_stamp_new_id(packet: dict[str, Any]) -> dict[str, Any]:
    """The same content and stamp under a fresh messageId (signed again): a replay of the
    stamp."""
    replay = copy.deepcopy(packet)
    replay["meta"]["messageId"] = new_message_id()
    if replay["verification"].get("signature"):
        replay["verification"]["signature"] = pgp.sign_detached(
            signature_input_of(replay), key_for(replay["sender"])
        )
    return replay


def _packet_spans(data: bytes) -> list[tuple[int, int, int]]:
    """(tag, start, end) of each OpenPGP packet in `data`, headers included."""
    spans, start = [], 0
    for tag, body, length in openpgp_packets.packets(data):
        spans.append((tag, start, body + length))
        start = body + length
    return spans


def bloated_public_key(email: str, max_chars: int) -> str:
    """A valid public key for `email` whose user id (with its self-signature) is repeated
    as often as fits in `max_chars` of armor: cheap to build, expensive for a server that
    parses and checks it all."""
    import pgpy  # only this helper needs PGPy directly

    data = bytes(pgpy.PGPKey.from_blob(key_for(email).public.armored)[0])
    spans = _packet_spans(data)
    uid = next(n for n, (tag, _, _) in enumerate(spans) if tag == 13)
    block = data[spans[uid][1] : spans[uid + 1][2]]
    # Armor: base64 (4 chars per 3 bytes) in 64-char lines, plus a few header lines.
    copies = ((max_chars - 200) * 3 // 4 * 64 // 65 - len(data)) // len(block)
    bloated = data[: spans[uid + 1][2]] + block * copies + data[spans[uid + 1][2] :]
    armored = str(pgpy.PGPKey.from_blob(bloated)[0])
    assert len(armored) <= max_chars, (len(armored), max_chars)
    return armored


# ---------------------------------------------------------------------------- the wire


class Wire(BaseWire):
    """`wire.Wire` signing AUTH with the keys of this module."""

    def auth(self, email: str, key: pgp.PrivateKey | None = None) -> dict[str, Any]:
        return super().auth(email, key or key_for(email))


def code_of(answer: dict[str, Any]) -> str:
    """The error code of an answer, or "OK" for an OK answer."""
    if answer.get("status") == "OK":
        return "OK"
    return str(answer["error"]["code"])


def register(address: tuple[str, int], email: str = RECIPIENT) -> None:
    """Register the test key of `email`, and of the load's sender (`LOAD_SENDER`)."""
    with Wire(address) as wire:
        for who in dict.fromkeys((email, LOAD_SENDER)):
            key = key_for(who)
            answer = wire.request("REGISTER_KEY", {"email": who, "publicKey": key.public.armored})
            assert answer["status"] == "OK", answer


def receive_all(tls_address: tuple[str, int], email: str = RECIPIENT) -> list[dict[str, Any]]:
    """Every stored message for `email`, paged with the cursor, over TLS with AUTH."""
    with Wire(tls_address, tls=True) as wire:
        assert wire.auth(email)["status"] == "OK"
        messages: list[dict[str, Any]] = []
        since = None
        while True:
            data: dict[str, Any] = {"email": email, "limit": 1000}
            if since is not None:
                data["since"] = since
            answer = wire.request("RECEIVE", data)
            assert answer["status"] == "OK", answer
            messages.extend(answer["messages"])
            since = answer["cursor"]
            if not answer["more"]:
                return messages


def mailbox_counts(tls_address: tuple[str, int], email: str = RECIPIENT) -> Counter[str]:
    """How many times each messageId is stored for `email`."""
    return Counter(m["meta"]["messageId"] for m in receive_all(tls_address, email))


def timed_send(address: tuple[str, int], packet: dict[str, Any] | None = None) -> float:
    """Seconds a fresh client needs to connect, be greeted and get a SEND acknowledged."""
    packet = packet or packet_for()
    start = time.monotonic()
    with Wire(address) as wire:
        answer = wire.request("SEND", {"packet": packet})
    elapsed = time.monotonic() - start
    assert answer["status"] == "OK", answer
    return elapsed


class SendLoad:
    """`senders` threads sending SENDs until the server goes away or the block ends.

    Records every acknowledged packet by messageId, every refusal, and how many requests
    were sent whose answer never came (cut off by the server going away).
    """

    def __init__(self, address: tuple[str, int], senders: int = 8, seed: int = 0) -> None:
        self.address = address
        self.acked: dict[str, dict[str, Any]] = {}
        self.refused: list[dict[str, Any]] = []
        self.cut_off = 0  # requests sent whose answer never came
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(random.Random(seed + i),), daemon=True)
            for i in range(senders)
        ]

    def __enter__(self) -> SendLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        assert not any(t.is_alive() for t in self._threads)

    def _run(self, rng: random.Random) -> None:
        try:
            wire = Wire(self.address, timeout=20)
        except (OSError, Closed):
            return
        with wire:
            while not self._stop.is_set():
                # Some requests go one at a time, some pipelined in small batches.
                batch = [packet_for(body=f"{rng.random()}" * rng.randint(1, 40))]
                batch += [packet_for() for _ in range(rng.choice((0, 0, 2, 4)))]
                try:
                    for packet in batch:
                        wire.send_request("SEND", {"packet": packet})
                except OSError:
                    with self._lock:
                        self.cut_off += len(batch)
                    return
                for index, packet in enumerate(batch):
                    try:
                        answer = wire.read()
                    except (Closed, OSError):
                        with self._lock:
                            self.cut_off += len(batch) - index
                        return
                    with self._lock:
                        if answer["status"] == "OK":
                            assert answer["messageId"] == packet["meta"]["messageId"]
                            self.acked[answer["messageId"]] = packet
                        else:
                            self.refused.append(answer)


class Sampler:
    """Runs `probe()` every `interval` seconds in a thread; keeps the results."""

    def __init__(self, probe: Any, interval: float = 0.2) -> None:
        self.results: list[Any] = []
        self.errors: list[BaseException] = []
        self._probe = probe
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.results.append(self._probe())
            except BaseException as exc:
                self.errors.append(exc)
            self._stop.wait(self._interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


# ---------------------------------------------------------------------------- processes


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def pid_running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for whoever reaps it here)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = next((line for line in status.splitlines() if line.startswith("State:")), "")
    return "zombie" not in state and "(dead)" not in state


def proc_status_kb(pid: int, field: str) -> int:
    """VmRSS, VmHWM, ... of a process, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class ServerProcess:
    """`python -m mmtp_proto.server_cli` on free ports, its log in a file we can read."""

    def __init__(self, data_dir: Path, log_dir: Path, extra_args: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.log_dir = log_dir
        # More flags for mmtp-server, e.g. ["--database", url].
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen[bytes] | None = None
        self.plain: tuple[str, int] = ("", 0)
        self.tls: tuple[str, int] = ("", 0)
        self.log_path = log_dir / "server-0.log"
        self._starts = 0

    @property
    def ready_path(self) -> Path:
        return self.log_dir / "ready.json"

    def command(self) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "mmtp_proto.server_cli",
            "--port",
            "0",
            "--secure-port",
            "0",
            "--data-dir",
            str(self.data_dir),
            "--difficulty",
            str(DIFFICULTY),
            "--log-level",
            "INFO",
            "--ready-file",
            str(self.ready_path),
        ]
        for domain in DOMAINS:
            args += ["--domain", domain]
        return args + self.extra_args

    def start(self) -> ServerProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"server-{self._starts}.log"
        self._starts += 1
        # A server killed with SIGKILL leaves its file behind: it says nothing of the next.
        self.ready_path.unlink(missing_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with contextlib.suppress(FileNotFoundError):
                ready = json.loads(self.ready_path.read_text())
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log_text()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"server did not start:\n{self.log_text()}")
            time.sleep(0.05)
        assert ready["pid"] == self.proc.pid, ready
        assert stat.S_IMODE(self.ready_path.stat().st_mode) == 0o600
        self.plain, self.tls = tuple(ready["plain"]), tuple(ready["tls"])
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: no chance to flush or commit anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def delivery_pids(self) -> list[int]:
        """The delivery processes this server started, from its logs (all its starts)."""
        pids = []
        for log in sorted(self.log_dir.glob("server-*.log")):
            for line in log.read_text(errors="replace").splitlines():
                if "delivery process started (pid " in line:
                    pids.append(int(line.rsplit("(pid ", 1)[1].rstrip(")")))
        return pids

    def wait_for_orphans(self, timeout: float = 30.0) -> None:
        """After `kill`: wait until the delivery processes it left have seen the pipe close
        and exited, so that nothing of the killed server still talks to anyone."""
        deadline = time.monotonic() + timeout
        for pid in self.delivery_pids():
            while pid_running(pid):
                if time.monotonic() > deadline:
                    raise AssertionError(f"delivery process {pid} outlived its server")
                time.sleep(0.05)

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def rss_kb(self) -> int:
        return proc_status_kb(self.pid, "VmRSS")

    def peak_rss_kb(self) -> int:
        return proc_status_kb(self.pid, "VmHWM")
