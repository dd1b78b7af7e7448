"""What the client trusts and what it presents over TLS, read and checked once.

Both transports build their TLS from one ``TLSMaterial``, loaded before any packet
is sent, so a missing, unreadable or non-PEM ``ca_file``, ``certfile`` or
``keyfile``, a key that does not match its certificate or a wrong ``key_password``
is a ``TLSFileError`` that names the file, not a timeout (aioquic reads its CA
file in the middle of the handshake) or a bare ``FileNotFoundError``.

``TLSMaterial.trust_id`` is the digest of everything a TLS 1.3 session ticket's
validity rests on. Resumption does not check the server's certificate again, so a
ticket carries the trust of the handshake that earned it; the ticket store files
tickets under this digest, and a ticket earned without verification, under another
CA, for another server name or as another client is never offered.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .errors import TLSFileError

if TYPE_CHECKING:
    from cryptography import x509

__all__ = ["TLSMaterial", "TLSSettings", "load_tls_material"]


class TLSSettings(Protocol):
    """The TLS settings this module reads (``config.TLSSettings`` has them)."""

    host: str
    server_name: str | None
    insecure: bool
    tls_context: ssl.SSLContext | None
    ca_file: str | None
    ca_data: str | None
    certfile: str | None
    keyfile: str | None
    key_password: str | None

# A PEM private key block, PKCS#8 or traditional, encrypted or not.
_KEY_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----",
                        re.DOTALL)
# Files above this size are not certificates or keys (a CA bundle is about 200 KB).
MAX_PEM_FILE = 4 * 1024 * 1024


@dataclass(frozen=True)
class TLSMaterial:
    """The trust and the client identity of one ConnectionConfig."""

    verify: bool  # the server's certificate is verified
    # The CA certificates to trust (PEM), or None for the system's trust store.
    ca_pem: str | None
    # The client certificate, its chain and key, for mutual TLS; None without certfile.
    certificate: x509.Certificate | None = field(default=None, repr=False)
    chain: tuple[x509.Certificate, ...] = field(default=(), repr=False)
    private_key: Any = field(default=None, repr=False)
    trust_id: str = ""


def load_tls_material(config: TLSSettings, alpn: str = "mqtt") -> TLSMaterial:
    """Read and check the TLS files of ``config``; TLSFileError names the one at fault."""
    verify, ca_pem, ca_der = _trust(config)
    certificate, chain, key = _client_identity(config)
    parts = [
        "v1",
        f"alpn={alpn}",
        f"server_name={config.server_name or config.host}",
        "verify=" + ("no" if not verify else "system" if ca_pem is None else "cas"),
    ]
    if verify and ca_pem is None:
        paths = ssl.get_default_verify_paths()  # SSL_CERT_FILE / SSL_CERT_DIR change it
        parts.append(f"store={paths.cafile}:{paths.capath}")
    parts += sorted("ca=" + hashlib.sha256(der).hexdigest() for der in ca_der)
    if certificate is not None:
        from cryptography.hazmat.primitives.serialization import Encoding

        parts.append("client=" + hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest())
    trust_id = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]
    return TLSMaterial(verify, ca_pem, certificate, chain, key, trust_id)


def _trust(config: TLSSettings) -> tuple[bool, str | None, list[bytes]]:
    """Whether to verify, the PEM of the CAs to trust (None: the system store), and
    their DER encodings (what the trust digest is made of)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    context = config.tls_context
    if config.insecure or (context is not None and context.verify_mode == ssl.CERT_NONE):
        return False, None, []
    certificates: list[x509.Certificate] = []
    if config.ca_file:
        certificates += _certificates("ca_file", config.ca_file, _read("ca_file", config.ca_file))
    if config.ca_data:
        certificates += _certificates("ca_data", None, config.ca_data.encode())
    if context is not None:
        from cryptography import x509

        certificates += [x509.load_der_x509_certificate(der)
                         for der in context.get_ca_certs(binary_form=True)]
    if not certificates:
        return True, None, []
    ders = [cert.public_bytes(Encoding.DER) for cert in certificates]
    pem = "".join(cert.public_bytes(Encoding.PEM).decode("ascii") for cert in certificates)
    return True, pem, ders


def _client_identity(config: TLSSettings) -> tuple[Any, tuple[Any, ...], Any]:
    if not config.certfile:
        if config.keyfile:
            raise TLSFileError("keyfile", config.keyfile, "a key without a certificate (set certfile)")
        return None, (), None
    cert_bytes = _read("certfile", config.certfile)
    certificates = _certificates("certfile", config.certfile, cert_bytes)
    if config.keyfile:
        what, path, key_bytes = "keyfile", config.keyfile, _read("keyfile", config.keyfile)
    else:
        what, path, key_bytes = "certfile", config.certfile, cert_bytes
    key = _private_key(what, path, key_bytes, config.key_password)
    _check_pair(certificates[0], key, path, config.certfile)
    return certificates[0], tuple(certificates[1:]), key


def _read(what: str, path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_PEM_FILE + 1)
    except OSError as exc:
        raise TLSFileError(what, path, exc.strerror or str(exc)) from None
    if len(data) > MAX_PEM_FILE:
        raise TLSFileError(what, path, f"larger than {MAX_PEM_FILE // (1024 * 1024)} MiB:"
                                       " not a PEM file")
    return data


def _certificates(what: str, path: str | None, data: bytes) -> list[x509.Certificate]:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        cause = ("no PEM certificate in it" if b"-----BEGIN CERTIFICATE-----" not in data
                 else f"a damaged PEM certificate ({exc})")
        raise TLSFileError(what, path, cause) from None


def _private_key(what: str, path: str, data: bytes, password: str | None) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    block = _KEY_BLOCK.search(data)
    if block is None:
        where = "" if what == "keyfile" else " (and no keyfile was given)"
        raise TLSFileError(what, path, f"no PEM private key in it{where}")
    pem = block.group(0)
    encrypted = b"ENCRYPTED" in pem.split(b"\n", 2)[0] or b"Proc-Type: 4,ENCRYPTED" in pem
    if encrypted and password is None:
        raise TLSFileError(what, path, "the key is encrypted and no key_password was given")
    try:
        # A password for a key that is not encrypted is ignored, as ssl does.
        return load_pem_private_key(pem, password.encode() if encrypted and password else None)
    except (ValueError, TypeError):
        # The password itself never goes into a message.
        cause = "wrong key_password (or a damaged key)" if encrypted else "a damaged PEM private key"
        raise TLSFileError(what, path, cause) from None


def _check_pair(certificate: x509.Certificate, key: Any, key_path: str, cert_path: str) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    def spki(public: Any) -> bytes:
        return bytes(public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))

    if spki(certificate.public_key()) != spki(key.public_key()):
        raise TLSFileError("keyfile" if key_path != cert_path else "certfile", key_path,
                           f"the key does not belong to the certificate in {cert_path}")
