"""Client certificates, server trust and login for OPC UA sessions (``wattline certs``).

The client certificate and key are generated on first start when absent (key file mode 0600) and kept, so the
server's administrator trusts them once. Server certificates are trusted when a copy (DER or PEM) is in the trust
folder; a server whose certificate is not there is refused and its certificate saved to ``<trust_folder>/../rejected``
for review, unless ``auto_trust_first_use`` is on, which trusts (and saves) the first certificate a server presents.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
from pathlib import Path
from typing import Callable

from asyncua import Client, ua
from asyncua.crypto import security_policies
from asyncua.crypto.cert_gen import dump_private_key_as_pem, generate_private_key, generate_self_signed_app_certificate
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from collectors import CollectorError
from collectors.opcua.config import SecurityConfig, ServerConfig
from core.notices import Notice

_POLICIES = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
_MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}


def ensure_client_certificate(security: SecurityConfig, renew: bool = False, days: int = 730) -> tuple[Path, Path, bool]:
    """Create the client key and certificate when missing (or when ``renew``); return (cert, key, created)."""
    cert_path, key_path = Path(security.certificate), Path(security.private_key)
    if cert_path.is_file() and key_path.is_file() and not renew:
        return cert_path, key_path, False
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_private_key()
    host = socket.gethostname()
    cert = generate_self_signed_app_certificate(
        key,
        "Wattline collector",
        {"organizationName": "Wattline"},
        [x509.UniformResourceIdentifier(security.application_uri), x509.DNSName(host)],
        extended=[ExtendedKeyUsageOID.CLIENT_AUTH],
        days=days,
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(dump_private_key_as_pem(key))
    cert_path.write_bytes(cert.public_bytes(Encoding.DER))
    return cert_path, key_path, True


def load_cert(path: Path) -> x509.Certificate:
    """Load a DER or PEM certificate."""
    data = path.read_bytes()
    if data.startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint as colon-separated hex."""
    digest = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def describe_certificate(path: Path) -> dict:
    """Subject, validity, application URI and fingerprint of a certificate file."""
    cert = load_cert(path)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    return {
        "path": str(path),
        "subject": cert.subject.rfc4514_string(),
        "application_uri": uris[0] if uris else None,
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "expires_in_days": (cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)).days,
        "sha256": fingerprint(cert),
    }


def check_server_trust(server: ServerConfig, server_cert_der: bytes, notify: Callable[[Notice], None]) -> None:
    """Trust the server certificate if it is in the trust folder (or on first use when allowed); else raise."""
    sec = server.security
    trust = Path(sec.trust_folder)
    cert = x509.load_der_x509_certificate(server_cert_der)
    fp = fingerprint(cert)
    if trust.is_dir():
        for path in trust.iterdir():
            if path.is_file():
                try:
                    if fingerprint(load_cert(path)) == fp:
                        return
                except ValueError:
                    continue
    name = f"{server.name}-{fp.replace(':', '')[:16]}.der"
    if sec.auto_trust_first_use:
        trust.mkdir(parents=True, exist_ok=True)
        (trust / name).write_bytes(server_cert_der)
        notify(Notice("collector.security.trusted_first_use",
                      f"trusted the certificate of {server.name} on first use ({fp[:23]}...) and saved it to {trust}",
                      {"server": server.name, "sha256": fp, "path": str(trust / name)}))
        return
    rejected = trust.parent / "rejected"
    rejected.mkdir(parents=True, exist_ok=True)
    (rejected / name).write_bytes(server_cert_der)
    raise CollectorError(
        f"server {server.name}: its certificate (SHA-256 {fp[:23]}...) is not trusted; review {rejected / name} and "
        f"move it to {trust} to trust it, or set security.auto_trust_first_use: true"
    )


async def apply_security(client: Client, server: ServerConfig, notify: Callable[[Notice], None]) -> None:
    """Configure security policy, certificates, trust and login on a client before ``connect()``."""
    sec, login = server.security, server.login
    if sec.policy != "None":
        cert_path, key_path, created = ensure_client_certificate(sec)
        if created:
            notify(Notice("collector.security.client_certificate_created",
                          f"created the client certificate {cert_path}; the server must trust it",
                          {"server": server.name, "certificate": str(cert_path)}, level="info"))
        policy = _POLICIES[sec.policy]
        mode = _MODES[sec.mode]
        endpoints = await client.connect_and_get_server_endpoints()
        try:
            endpoint = Client.find_endpoint(endpoints, mode, policy.URI)
        except ua.UaError:
            offered = sorted({f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]}/{e.SecurityMode.name}" for e in endpoints})
            raise CollectorError(
                f"server {server.name} offers no endpoint with {sec.policy}/{sec.mode}; it offers: {', '.join(offered)}"
            ) from None
        from asyncua.client.client import _first_cert_from_chain

        server_der = _first_cert_from_chain(endpoint.ServerCertificate)
        check_server_trust(server, server_der, notify)
        await client.set_security(policy, str(cert_path), str(key_path), server_certificate=server_der, mode=mode)
    if login.mode == "username":
        client.set_user(login.username)
        password = login.get_password()
        if password is not None:
            client.set_password(password)
    elif login.mode == "certificate":
        await client.load_client_certificate(login.certificate)
        await client.load_private_key(login.private_key)
