"""PGPy speed-up for RSA private keys: validate the key numbers once, not on every operation.

Part of the PGPy adapter (with :mod:`mmtp_proto.pgp` and :mod:`mmtp_proto.pgp_validity`):
importing it patches PGPy's ``RSAPriv.__privkey__`` for the whole process.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from pgpy.packet.fields import RSAPriv

from .errors import LocalError

# PGPy's RSAPriv.__privkey__ rebuilds a cryptography key from the raw numbers on every sign or
# decrypt, and cryptography then re-checks the whole key (~0.25 s for RSA-4096, twice per
# decrypt). We build that object once per loaded key, after a full check (or skipping it for a
# key cryptography itself just generated), pin it on the key material, and let the patched
# method hand it back while the numbers are unchanged. Key material we did not prime (anything
# not loaded or made by mmtp_proto.pgp) still takes PGPy's original, validating path.

_ORIGINAL_RSA_PRIVKEY = getattr(RSAPriv, "_mmtp_original_privkey", RSAPriv.__privkey__)
_READY_ATTR = "_mmtp_ready_key"


def _rsa_numbers(material: Any) -> tuple[int, ...]:
    return (int(material.n), int(material.e), int(material.d), int(material.p), int(material.q))


def _rsa_privkey(self: Any) -> Any:
    ready = self.__dict__.get(_READY_ATTR)
    if ready is not None and ready[0] == _rsa_numbers(self):
        return ready[1]
    return _ORIGINAL_RSA_PRIVKEY(self)


RSAPriv._mmtp_original_privkey = _ORIGINAL_RSA_PRIVKEY  # type: ignore[attr-defined]
RSAPriv.__privkey__ = _rsa_privkey  # type: ignore[method-assign]


def _prime_rsa(key: Any, *, trusted: bool) -> None:
    for part in (key, *key.subkeys.values()):
        material = part._key.keymaterial
        if not isinstance(material, RSAPriv):
            continue
        if trusted:
            p, q, d = int(material.p), int(material.q), int(material.d)
            crypto_key = rsa.RSAPrivateNumbers(
                p,
                q,
                d,
                rsa.rsa_crt_dmp1(d, p),
                rsa.rsa_crt_dmq1(d, q),
                rsa.rsa_crt_iqmp(p, q),
                rsa.RSAPublicNumbers(int(material.e), int(material.n)),
            ).private_key(unsafe_skip_rsa_key_validation=True)
        else:
            try:
                crypto_key = _ORIGINAL_RSA_PRIVKEY(material)
            except ValueError as exc:
                raise LocalError(
                    f"the private key's RSA numbers are inconsistent ({exc}); the key file is "
                    "damaged or was not made by OpenPGP software"
                ) from exc
        material.__dict__[_READY_ATTR] = (_rsa_numbers(material), crypto_key)


def _copy_primed(source: Any, target: Any) -> None:
    ready = {
        str(part.fingerprint): part._key.keymaterial.__dict__.get(_READY_ATTR)
        for part in (source, *source.subkeys.values())
    }
    for part in (target, *target.subkeys.values()):
        found = ready.get(str(part.fingerprint))
        if found is not None:
            part._key.keymaterial.__dict__[_READY_ATTR] = found


# --- parsing -----------------------------------------------------------------------------------
