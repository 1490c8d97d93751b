"""Notifications: what a check run and a delivery cost.

Prints, each next to its reference on the same machine and as a ratio:
  * one run of every notification check (expiring certificates, CA expiry, CRLs, audit chain, keys,
    enrollment floods) on an installation with N certificates, next to ``audit verify`` alone (the
    walk over the whole trail that the audit check does);
  * webhook deliveries per second through the outbox (claim, signed POST, mark sent, audit event)
    to a local receiver, next to bare signed POSTs of the same bodies over one httpx client.

Run:  python bench/notify_bench.py [--quick] [--certificates N] [--messages M]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from otward.adapters.db.notifications import OutboxEntry, Plan
from otward.config import load_settings
from otward.core.notifications import Condition, NotifyEvent, decide, encode_payload, signature_header
from otward.services.bootstrap import initialize
from otward.services.notifications import Notifier
from otward.services.pki import Pki


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _median(run: Callable[[], float], rounds: int = 3) -> float:
    return statistics.median(run() for _ in range(rounds))


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _csr(index: int) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bench-{index}")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--certificates", type=int, default=5000)
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args()
    certificates = 500 if args.quick else args.certificates
    messages = 50 if args.quick else args.messages

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        initialize(data, organization="bench")
        secret = data / "hook.secret"
        secret.write_text("bench-secret\n")
        secret.chmod(0o600)
        with (data / "config.toml").open("a") as handle:
            handle.write(f'\n[[notify.webhook]]\nurl = "{url}"\nsecret_file = "{secret}"\n')
        pki = Pki.open(load_settings(data))
        try:
            for index in range(certificates):  # validities 1..60 days: about half expiring within 30
                pki.issuance.issue(_csr(index), profile="tls-client", validity_days=1 + index % 60)
            notifier = Notifier.for_pki(pki)
            records = pki.stores.audit.audit_head()[0]

            check = _median(lambda: _timed(notifier.evaluate))
            verify = _median(lambda: _timed(pki.audit.verify))
            conditions, _ = notifier.evaluate()
            print(f"installation: {certificates} certificates, {records} audit records (SQLite)")
            print(
                f"one check run, every event: {check * 1000:8.1f} ms   reference audit verify alone: "
                f"{verify * 1000:8.1f} ms   ratio {check / verify:.2f}   ({len(conditions)} conditions)"
            )

            # Deliveries: queue `messages` notifications, then drain them to the receiver.
            now = pki.clock()
            fake = [
                Condition(NotifyEvent.CRL_FAILED, f"bench/{i}", frozenset({"x"}), f"bench {i}", {"i": i})
                for i in range(messages)
            ]
            channel = notifier.channels[0]
            decision = decide(fake, {}, (), now)
            bodies = [encode_payload(n, "bench") for n in decision.notifications]
            entries = [
                OutboxEntry(n.id, channel.name, n.event.value, n.key, body.decode())
                for n, body in zip(decision.notifications, bodies, strict=True)
            ]
            pki.stores.notifications.save_decision(now, lambda _: Plan({}, (), entries))
            drain = _timed(notifier.drain)
            with httpx.Client(trust_env=False) as client:

                def bare() -> None:
                    for body in bodies:
                        stamp = int(time.time())
                        client.post(
                            url,
                            content=body,
                            headers={
                                "Content-Type": "application/json",
                                "X-Otward-Timestamp": str(stamp),
                                "X-Otward-Signature": signature_header(b"bench-secret", stamp, body),
                            },
                        )

                reference = _median(lambda: _timed(bare))
            print(
                f"webhook deliveries through the outbox: {messages / drain:8.0f} /s   reference bare "
                f"signed POSTs: {messages / reference:8.0f} /s   ratio {reference / drain:.2f}"
            )
            notifier.close()
        finally:
            pki.close()
            server.shutdown()


if __name__ == "__main__":
    main()
