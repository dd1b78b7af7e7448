"""Throwaway X.509 certificates for the gateway, the demo and the tests.

A certificate authority and a server certificate signed by it, for names such
as ``localhost`` and ``127.0.0.1``. Not for production: the keys are written
unencrypted (mode 0600).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CertificateFiles", "generate_certificates", "kept_identity"]

logger = logging.getLogger("mqttquic.gateway")

# A kept identity is made for this long, and made anew when less than RENEW_BEFORE is left.
IDENTITY_DAYS = 3650
RENEW_BEFORE = datetime.timedelta(days=30)
IDENTITY_PREFIX = "gateway-"


@dataclass(frozen=True)
class CertificateFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    if hasattr(os, "fchmod"):  # a file that was there keeps its mode through O_CREAT
        os.fchmod(fd, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def generate_certificates(directory: str | os.PathLike[str],
                          names: tuple[str, ...] = ("localhost", "127.0.0.1", "::1"),
                          days: int = 30, prefix: str = "",
                          start: datetime.datetime | None = None,
                          client_auth: bool = False) -> CertificateFiles:
    """Write ``{prefix}ca.pem``, ``{prefix}server.pem`` and ``{prefix}server.key``, valid
    for ``days`` from ``start`` (default: five minutes ago). ``client_auth``: the
    certificate may also serve as a client certificate (mutual TLS)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    not_before = start or datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    not_after = not_before + datetime.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"mqttquic test CA {prefix}")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    alt_names = [_general_name(name) for name in names]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH,
             *([ExtendedKeyUsageOID.CLIENT_AUTH] if client_auth else [])]), critical=False)
        # Python 3.13's default SSLContext verifies strictly (VERIFY_X509_STRICT): it wants
        # the key identifiers that link a certificate to its issuer.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    files = CertificateFiles(folder / f"{prefix}ca.pem", folder / f"{prefix}server.pem",
                             folder / f"{prefix}server.key")
    _write(files.ca_file, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(files.cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(files.key_file, key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()), 0o600)
    return files


def _general_name(name: str) -> Any:
    """A subjectAltName entry: an IP address, else a DNS name."""
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def kept_identity(directory: str | os.PathLike[str]) -> CertificateFiles:
    """The gateway's own certificate, kept in ``directory`` across restarts, so that a
    client that trusts its CA (``--cafile``) still does after a restart.

    Made when missing (a CA and a server certificate for localhost, this host's name
    and the loopback addresses, valid ten years; the key mode 0600, the folder 0700),
    reused while it has 30 days left, made anew (with a warning: clients must trust the
    new CA) when it expires or does not load. Files another user owns or may write, or
    a key others may read, are refused (ValueError): anything could be in them. The CA's
    own key is not kept: nothing else can be signed with it."""
    from ._files import why_untrusted

    folder = Path(directory).expanduser()
    files = CertificateFiles(folder / f"{IDENTITY_PREFIX}ca.pem",
                             folder / f"{IDENTITY_PREFIX}server.pem",
                             folder / f"{IDENTITY_PREFIX}server.key")
    paths = (files.ca_file, files.cert_file, files.key_file)
    if all(path.exists() for path in paths):
        for path in paths:
            problem = why_untrusted(os.stat(path), secret=path == files.key_file)
            if problem:
                raise ValueError(f"gateway certificate file {path} {problem}: fix it (chmod 600,"
                                 f" chown), or remove {folder} for a new certificate")
        why_not = _unusable(files)
        if not why_not:
            return files
        logger.warning("the kept gateway certificate in %s %s: made a new one; clients must"
                       " trust its CA %s", folder, why_not, files.ca_file)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    names: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
    host = socket.gethostname()
    if host and host not in names:
        names = (names[0], host, *names[1:])
    return generate_certificates(folder, names, days=IDENTITY_DAYS, prefix=IDENTITY_PREFIX)


def _unusable(files: CertificateFiles) -> str:
    """Why a kept identity cannot be used any more, or ""."""
    from cryptography import x509

    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(files.cert_file, files.key_file)  # the key matches
        certificate = x509.load_pem_x509_certificate(files.cert_file.read_bytes())
        x509.load_pem_x509_certificate(files.ca_file.read_bytes())
    except (OSError, ssl.SSLError, ValueError) as exc:
        return f"does not load ({exc})"
    left = certificate.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    if left < RENEW_BEFORE:
        return f"expires on {certificate.not_valid_after_utc:%Y-%m-%d}"
    return ""
