"""The federation options (config file keys and flags) and their mistakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmtp_proto.config import ServerConfig, config_from_mapping
from mmtp_proto.errors import ALL_CODES, NO_ROUTE, REMOTE_REFUSED, REMOTE_UNAVAILABLE, LocalError
from mmtp_proto.server_cli import build_config, build_parser


def test_the_revision_2_codes_are_in_the_vocabulary():
    assert {NO_ROUTE, REMOTE_UNAVAILABLE, REMOTE_REFUSED} <= ALL_CODES


def test_flags_set_every_federation_option(tmp_path: Path):
    args = build_parser().parse_args(
        [
            "--relay",
            "--route",
            "B.Example=10.0.0.2:8026",
            "--route",
            "c.example=[::1]:9026",
            "--dns-server",
            "127.0.0.1:5353",
            "--relay-tls-verify",
            "ca",
            "--relay-ca",
            str(tmp_path / "ca.pem"),
            "--allow-private-targets",
            "--retry-base",
            "0.5",
        ]
    )
    config = build_config(args)
    assert config.relay is True
    assert config.routes == {"b.example": "10.0.0.2:8026", "c.example": "::1:9026"}
    assert config.dns_server == "127.0.0.1:5353"
    assert config.relay_ca == tmp_path / "ca.pem"
    assert config.allow_private_targets is True
    assert config.retry_base == 0.5


@pytest.mark.parametrize(
    "values",
    [
        {"routes": {"b.example": "nowhere"}},
        {"routes": "b.example=1.2.3.4:5"},
        {"relay_tls_verify": "sometimes"},
        {"relay_tls_verify": "tofu", "relay_ca": "/ca.pem"},
        {"retry_base": 0},
        {"dns_server": 53},
    ],
)
def test_federation_mistakes_are_refused_in_words(values):
    with pytest.raises(LocalError):
        config_from_mapping(values).validate()


def test_relaying_needs_the_tls_listener(tmp_path: Path):
    config = ServerConfig(data_dir=tmp_path, domains=["a.test"], relay=True, tls=False)
    with pytest.raises(LocalError, match="TLS listener"):
        config.validate()
