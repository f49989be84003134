"""Client certificates, server trust and login for OPC UA sessions (``wattline certs``).

The client certificate and key are generated on first start when absent (key file mode 0600) and kept, so the
server's administrator trusts them once. Server certificates are trusted when a copy (DER or PEM) is in the trust
folder; a server whose certificate is not there is refused and its certificate saved to ``<trust_folder>/../rejected``
for review, unless ``auto_trust_first_use`` is on, which trusts (and saves as ``<server name>-<fingerprint>.der``) the
first certificate a server presents. Only the first: once a certificate was trusted that way, a server presenting a
different one is refused like an unknown server (a replaced machine, or someone in the middle).

Connection failures the operator must fix (untrusted certificates, refused logins) are raised as
:class:`SecurityRefused` with a message naming the config key and the fix; secrets never go into messages.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import re
import socket
import weakref
from collections.abc import Callable
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto import security_policies
from asyncua.crypto.cert_gen import dump_private_key_as_pem, generate_private_key, generate_self_signed_app_certificate
from asyncua.ua.ua_binary import nodeid_from_binary, struct_from_binary
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID

from collectors import CollectorError
from collectors.opcua.compat_asyncua import first_cert_from_chain, node_id, on_received_messages, user_token_policies
from collectors.opcua.config import SecurityConfig, ServerConfig
from core.config import read_secret_file
from core.notices import Notice

_POLICIES: dict[str, type[security_policies.SecurityPolicyBasic256Sha256]
                      | type[security_policies.SecurityPolicyAes128Sha256RsaOaep]
                      | type[security_policies.SecurityPolicyAes256Sha256RsaPss]] = {  # concrete classes (not the ABC)
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
_MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}
#: Status codes of ActivateSession that mean "this login is refused" (the rest of a failed connect is the channel).
_LOGIN_CODES = {"BadUserAccessDenied", "BadIdentityTokenRejected", "BadIdentityTokenInvalid", "BadUserSignatureInvalid"}
_TOKEN_NAMES = {ua.UserTokenType.Anonymous: "anonymous", ua.UserTokenType.UserName: "username",
                ua.UserTokenType.Certificate: "certificate"}


class _RedactIdentityTokens(logging.Filter):
    """asyncua logs every request it sends at DEBUG, ActivateSession with the password in clear text when the
    token is not encrypted (a SignAndEncrypt channel or policy None); keep the request type, drop the contents."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if any(isinstance(a, ua.ActivateSessionRequest) for a in args):
            record.msg, record.args = "Sending: ActivateSessionRequest (identity token not logged)", ()
        return True


_REDACT = _RedactIdentityTokens()


def redact_asyncua_logs() -> None:
    """Install the identity-token filter on asyncua's request logger (idempotent)."""
    logger = logging.getLogger("asyncua.client.ua_client.UASocketProtocol")
    if _REDACT not in logger.filters:
        logger.addFilter(_REDACT)


class SecurityRefused(CollectorError):
    """A connection refused for a reason the operator must fix (trust, certificates, login); never a secret inside.

    ``notice`` is the name of the notice the session reports it under.
    """

    def __init__(self, message: str, notice: str = "collector.server.security_refused") -> None:
        super().__init__(message)
        self.notice = notice


def ensure_client_certificate(security: SecurityConfig, renew: bool = False, days: int = 730) -> tuple[Path, Path, bool]:
    """Create the client key and certificate when missing (or when ``renew``); return (cert, key, created).

    Raises
    ------
    SecurityRefused
        When only one of the two files exists (naming the missing key); ``renew`` replaces both.
    """
    cert_path, key_path = Path(security.certificate), Path(security.private_key)
    if cert_path.is_file() and key_path.is_file() and not renew:
        return cert_path, key_path, False
    if (cert_path.is_file() or key_path.is_file()) and not renew:
        # Half a pair: regenerating would overwrite a certificate the server may trust (or one a CA issued).
        pair = (("security.certificate", cert_path), ("security.private_key", key_path))
        have, lost = pair if cert_path.is_file() else pair[::-1]
        raise SecurityRefused(
            f"{lost[0]} {lost[1]} is missing while {have[0]} {have[1]} exists; restore it, point {lost[0]} at it, or "
            "run `wattline certs --renew` to make a new pair (the server must then trust the new certificate)"
        )
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
    os.fchmod(fd, 0o600)  # the mode argument only applies to a new file; a renewed key may have been 0644
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
        "expires_in_days": (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).days,
        "sha256": fingerprint(cert),
    }


def _file_stem(server_name: str) -> str:
    """The server name as a file name (server names are free text: ``north/l1`` must not become a folder)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", server_name).strip("._") or "server"


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
    stem = _file_stem(server.name)
    name = f"{stem}-{fp.replace(':', '')[:16]}.der"
    first_use = re.compile(re.escape(stem) + r"-[0-9A-F]{16}\.der")
    earlier = sorted(p.name for p in trust.iterdir() if first_use.fullmatch(p.name)) if trust.is_dir() else []
    if sec.auto_trust_first_use and earlier:
        saved = _set_aside(trust, name, server_cert_der)
        raise SecurityRefused(
            f"server {server.name}: its certificate changed (SHA-256 {fp[:23]}...) and is not trusted; on first use "
            f"it presented {trust / earlier[0]}. If the server really got a new certificate, review {saved} "
            f"and move it to {trust} (security.trust_folder); security.auto_trust_first_use trusts only the first one"
        )
    if sec.auto_trust_first_use:
        trust.mkdir(parents=True, exist_ok=True)
        (trust / name).write_bytes(server_cert_der)
        notify(Notice("collector.security.trusted_first_use",
                      f"trusted the certificate of {server.name} on first use ({fp[:23]}...) and saved it to {trust}",
                      {"server": server.name, "sha256": fp, "path": str(trust / name)}))
        return
    saved = _set_aside(trust, name, server_cert_der)
    raise SecurityRefused(
        f"server {server.name}: its certificate (SHA-256 {fp[:23]}...) is not trusted; review {saved} and "
        f"move it to {trust} (security.trust_folder) to trust it, or set security.auto_trust_first_use: true"
    )


def _set_aside(trust: Path, name: str, der: bytes) -> Path:
    """Save a refused server certificate beside the trust folder (``rejected/``) for the operator to review."""
    rejected = trust.parent / "rejected"
    rejected.mkdir(parents=True, exist_ok=True)
    (rejected / name).write_bytes(der)
    return rejected / name


def _public_der(key: PublicKeyTypes | CertificatePublicKeyTypes) -> bytes:
    """A public key as DER SubjectPublicKeyInfo: equal bytes, same key (for every key type)."""
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _check_pair(cert_path: Path, key_path: Path, cert_key: str, key_key: str, what: str) -> str | None:
    """Raise naming the config keys when a certificate or key cannot be read or do not belong together.

    Returns a warning when the key file is readable by group or others (refusing would stop a running plant over a
    file mode; the session reports it instead).
    """
    try:
        cert = load_cert(cert_path)
    except FileNotFoundError:
        raise SecurityRefused(
            f"{cert_key} {cert_path} not found; set {cert_key} to the {what} certificate (DER or PEM)") from None
    except ValueError:
        raise SecurityRefused(f"{cert_key} {cert_path} is not a certificate (DER or PEM)") from None
    try:
        from cryptography.hazmat.primitives.serialization import load_der_private_key, load_pem_private_key

        data = key_path.read_bytes()
        key = (load_pem_private_key if data.lstrip().startswith(b"-----BEGIN") else load_der_private_key)(data, None)
    except FileNotFoundError:
        raise SecurityRefused(
            f"{key_key} {key_path} not found; set {key_key} to the key of {cert_key} {cert_path}") from None
    except (ValueError, TypeError):  # the message could quote key material: say only what to do
        raise SecurityRefused(f"{key_key} {key_path} is not an unencrypted private key (PEM or DER)") from None
    if _public_der(key.public_key()) != _public_der(cert.public_key()):
        raise SecurityRefused(f"{key_key} {key_path} is not the key of {cert_key} {cert_path}; give the matching pair")
    if key_path.stat().st_mode & 0o077:
        return f"{key_key} {key_path} is readable by group or others; run: chmod 600 {key_path}"
    return None


def _check_application_uri(sec: SecurityConfig, cert_path: Path) -> None:
    info = describe_certificate(cert_path)
    if info["application_uri"] != sec.application_uri:
        raise SecurityRefused(
            f"security.application_uri {sec.application_uri!r} differs from the URI in security.certificate "
            f"{cert_path} ({info['application_uri']!r}); servers refuse such a client. Set application_uri back, or "
            "run `wattline certs --renew` to make a certificate for the new URI (the server must trust it again)"
        )


async def apply_security(client: Client, server: ServerConfig, notify: Callable[[Notice], None]) -> None:
    """Configure security policy, certificates, trust and login on a client before ``connect()``.

    Raises
    ------
    SecurityRefused
        Naming the config key and the fix: an untrusted server certificate, a missing or mismatched certificate or
        key, an application URI that differs from the client certificate's.
    """
    sec, login = server.security, server.login
    redact_asyncua_logs()
    warnings = []
    if sec.policy != "None":
        cert_path, key_path, created = ensure_client_certificate(sec)
        if created:
            notify(Notice("collector.security.client_certificate_created",
                          f"created the client certificate {cert_path}; the server must trust it",
                          {"server": server.name, "certificate": str(cert_path)}, level="info"))
        warnings.append(_check_pair(cert_path, key_path, "security.certificate", "security.private_key", "client"))
        _check_application_uri(sec, cert_path)
        policy = _POLICIES[sec.policy]
        mode = _MODES[sec.mode]
        endpoints = await client.connect_and_get_server_endpoints()
        try:
            endpoint = Client.find_endpoint(endpoints, mode, policy.URI)
        except ua.UaError:
            offered = sorted({f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]}/{e.SecurityMode.name}" for e in endpoints})
            raise SecurityRefused(
                f"server {server.name} offers no endpoint with {sec.policy}/{sec.mode}; set security.policy and "
                f"security.mode to one it offers: {', '.join(offered)}"
            ) from None
        server_der = first_cert_from_chain(endpoint.ServerCertificate)
        check_server_trust(server, server_der, notify)
        await client.set_security(policy, str(cert_path), str(key_path), server_certificate=server_der, mode=mode)
    if login.mode == "username":
        assert login.username is not None  # LoginConfig requires a username in this mode
        client.set_user(login.username)
        # Read here rather than through LoginConfig.get_password so that a missing file names the key.
        password = read_secret_file(login.password_file, "password (login.password_file)") if login.password_file \
            else login.password
        if password is not None:
            client.set_password(password)
    elif login.mode == "certificate":
        assert login.certificate and login.private_key  # LoginConfig requires both in this mode
        cert_path, key_path = Path(login.certificate), Path(login.private_key)
        warnings.append(_check_pair(cert_path, key_path, "login.certificate", "login.private_key", "user"))
        await client.load_client_certificate(str(cert_path))
        await client.load_private_key(key_path)
    for text in filter(None, warnings):
        notify(Notice("collector.security.key_readable", f"server {server.name}: {text}",
                      {"server": server.name}, level="warning"))


def explain_connect_error(
    server: ServerConfig, exc: BaseException, client: Client | None = None
) -> SecurityRefused | None:
    """Turn a refused connect (status code from the server) into a message naming the config key and the fix.

    Returns None for failures that are not about security or login (network, timeouts, server faults).
    """
    if not isinstance(exc, ua.UaStatusCodeError):
        return None
    code = ua.StatusCode(exc.code).name
    sec, login = server.security, server.login
    offered = ""
    policies = user_token_policies(client)  # the endpoint's user token policies, after CreateSession
    names = sorted({_TOKEN_NAMES[p.TokenType] for p in policies if p.TokenType in _TOKEN_NAMES})
    if names:
        offered = f"; the endpoint offers login.mode {', '.join(names)}"
    if code in _LOGIN_CODES:
        if login.mode == "certificate":
            assert login.certificate is not None  # LoginConfig requires it in this mode
            try:
                fp = f" (SHA-256 {fingerprint(load_cert(Path(login.certificate)))[:23]}...)"
            except (OSError, ValueError):
                fp = ""
            msg = (f"server {server.name} refused the login certificate {login.certificate}{fp} ({code}): the "
                   f"server's administrator must trust it for user login, or set login.certificate and "
                   f"login.private_key to a certificate the server trusts{offered}")
        elif login.mode == "username":
            msg = (f"server {server.name} refused user {login.username!r} ({code}): check login.username and the "
                   f"password in login.password_file (or login.password){offered}")
        else:
            msg = (f"server {server.name} refused an anonymous session ({code}): set login.mode to username or "
                   f"certificate{offered}")
        return SecurityRefused(msg, "collector.server.login_refused")
    if code == "BadCertificateUriInvalid":
        return SecurityRefused(
            f"server {server.name} refused the client certificate {sec.certificate} ({code}): its URI must equal "
            f"security.application_uri ({sec.application_uri}); run `wattline certs --renew` and have the server "
            "trust the new certificate")
    if code.startswith("BadCertificate") or code in ("BadSecurityChecksFailed", "BadNoValidCertificates"):
        if sec.policy == "None":
            return SecurityRefused(f"server {server.name} refused the connection ({code}); it may require a secure "
                                   "channel: set security.policy and security.mode (`wattline check` lists them)")
        return SecurityRefused(
            f"server {server.name} refused the secure channel ({code}); most likely it does not trust the client "
            f"certificate {sec.certificate} (security.certificate): its administrator must trust it (usually by "
            "moving it from the server's rejected to its trusted certificates; `wattline certs` shows its "
            "fingerprint)")
    return None


def _record_status_errors(client: Client) -> list[ua.UaStatusCodeError]:
    """Collect the bad status codes a server answers this client's requests with, as seen on the socket.

    Why: when a server refuses OpenSecureChannel (node-opcua answers an untrusted client certificate with a
    ServiceFault BadSecurityChecksFailed), asyncua 2.1 tries to decode the fault as an OpenSecureChannelResponse, closes
    the socket and fails with a bare ``AssertionError``; the status code is only visible in the received message.
    """
    seen = _STATUS_RECORDS.get(client)
    if seen is not None:
        return seen
    seen = []

    def record(msg) -> None:
        try:
            if isinstance(msg, ua.ErrorMessage) and msg.Error is not None and msg.Error.is_bad():
                seen.append(ua.UaStatusCodeError(msg.Error.value))
            elif isinstance(msg, ua.Message):
                data = msg.body()
                if nodeid_from_binary(data) == node_id(ua.ObjectIds.ServiceFault_Encoding_DefaultBinary):
                    result = struct_from_binary(ua.ResponseHeader, data).ServiceResult
                    if result.is_bad():
                        seen.append(ua.UaStatusCodeError(result.value))
        except Exception:  # noqa: BLE001 - only a diagnosis aid: a message we cannot read is asyncua's to report
            pass

    if not on_received_messages(client, record):
        return []
    _STATUS_RECORDS[client] = seen
    return seen


#: The list each client's received refusals are recorded in (one recorder per client, however often it connects).
_STATUS_RECORDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def connect_client(client: Client, server: ServerConfig) -> None:
    """``client.connect()`` within the request timeout; security and login refusals become :class:`SecurityRefused`."""
    seen = _record_status_errors(client)
    seen.clear()
    try:
        await asyncio.wait_for(client.connect(), server.timeouts.request_s + 2)
    except ua.UaStatusCodeError as exc:
        explained = explain_connect_error(server, exc, client)
        if explained is None:
            raise
        raise explained from exc
    except (AssertionError, ConnectionError, ua.UaError) as exc:
        if not seen:
            raise
        status = seen[-1]  # what the server actually said; more use than asyncua's follow-up error
        raise (explain_connect_error(server, status, client) or status) from exc
