"""The README's example script works against a server started with no configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "example_two_users.py"

pytestmark = pytest.mark.secure


def test_readme_points_at_the_example() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/example_two_users.py" in readme


def test_two_users_exchange_an_encrypted_signed_message(start_server) -> None:
    server = start_server(domains=["localhost"])
    env = dict(os.environ, MMTP_SECURE_PORT=str(server.tls_address[1]))
    for run in range(2):  # a second run reuses the keys it made the first time
        result = subprocess.run(
            [sys.executable, str(EXAMPLE)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert "signature verified by server: True" in result.stdout, run
        assert "'Hello Bob' / 'Encrypted, signed, stamped.'" in result.stdout
        assert "encrypted=True signature=verified" in result.stdout
        assert "Traceback" not in result.stderr
