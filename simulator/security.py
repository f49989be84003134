"""Certificates for the simulator's secured endpoint, generated at start into a folder (never committed)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from simulator.errors import SimulatorError

APP_URI = "urn:wattline:simulator:server"


async def ensure_server_certificate(folder: Path, host: str) -> tuple[Path, Path]:
    """Return (key, certificate) paths in ``folder``, generating a self-signed pair when missing or invalid.

    The key file is created with mode 600. The certificate (DER) names the application URI and the host.
    """
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
    except OSError as exc:
        raise SimulatorError(f"cannot create the certificate folder {folder}: {exc}; pass a writable folder") from None
    key, cert = folder / "simulator-key.pem", folder / "simulator-cert.der"
    hostname = host if host not in ("0.0.0.0", "::", "") else socket.gethostname()
    await setup_self_signed_certificate(key, cert, APP_URI, hostname, [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
                                        {"commonName": "Wattline plant simulator", "organizationName": "Wattline"})
    os.chmod(key, 0o600)
    return key, cert
