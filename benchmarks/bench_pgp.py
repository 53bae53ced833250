"""OpenPGP operations per second (PGPy through mmtp_proto.pgp), RSA-4096 and Ed25519.

Every loop is bounded by a count and a time; RSA-4096 key generation gets one or two
samples only (it takes seconds). Payloads are 2 KB, like the SEND benchmark's bodies.
"""

from __future__ import annotations

from common import Section, Target, fmt_ms, fmt_rate, percentile, timed_loop

PAYLOAD = b"x" * 2048


def run(quick: bool, log=print) -> Section:
    from mmtp_proto import pgp

    section = Section(
        "OpenPGP operations (mmtp_proto.pgp on PGPy, 2 KB payloads)",
        ["algorithm", "operation", "samples", "ops/s", "p50 ms", "max ms"],
    )
    seconds = 0.5 if quick else 2.0
    count = 50 if quick else 400
    medians: dict[tuple[str, str], float] = {}
    for algorithm, label in (("ed25519", "Ed25519"), ("rsa4096", "RSA-4096")):
        log(f"  PGP: {label}...")
        keys = []

        def keygen(algorithm: str = algorithm, keys: list = keys) -> None:
            keys.append(pgp.generate_key("(bench)%(example.com)", "Bench", algorithm=algorithm))

        if algorithm == "rsa4096":
            n, elapsed, samples = timed_loop(keygen, count=1 if quick else 2, seconds=10.0)
        else:
            n, elapsed, samples = timed_loop(keygen, count=count, seconds=seconds)
        _row(section, medians, label, "keygen", n, elapsed, samples)
        key = keys[0]
        public = key.public
        ciphertext = pgp.encrypt(PAYLOAD, [public])
        signature = pgp.sign_detached(PAYLOAD, key)
        assert pgp.decrypt(ciphertext, key) == PAYLOAD
        assert pgp.verify_detached(PAYLOAD, signature, public)
        operations = (
            ("encrypt", lambda public=public: pgp.encrypt(PAYLOAD, [public])),
            ("decrypt", lambda key=key, ct=ciphertext: pgp.decrypt(ct, key)),
            ("sign", lambda key=key: pgp.sign_detached(PAYLOAD, key)),
            (
                "verify",
                lambda public=public, sig=signature: pgp.verify_detached(PAYLOAD, sig, public),
            ),
        )
        for name, fn in operations:
            fn()  # warm caches (the primed RSA numbers, imports)
            n, elapsed, samples = timed_loop(fn, count=count, seconds=seconds)
            _row(section, medians, label, name, n, elapsed, samples)

    for op in ("decrypt", "sign"):
        value = medians.get(("RSA-4096", op))
        if value is not None:
            section.targets.append(
                Target(
                    f"RSA-4096 {op} under 20 ms (median)",
                    f"{fmt_ms(value)} ms",
                    "< 20 ms",
                    value < 0.020,
                )
            )
    return section


def _row(section, medians, label, name, n, elapsed, samples) -> None:
    p50 = percentile(samples, 50)
    medians[(label, name)] = p50
    section.rows.append(
        [label, name, str(n), fmt_rate(n / elapsed), fmt_ms(p50), fmt_ms(max(samples))]
    )
