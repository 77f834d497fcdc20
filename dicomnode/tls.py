"""DICOM TLS contexts built from the ``tls`` section: one for the listener, one for outgoing associations.

Both use the node's certificate and key and verify the other side against ``tls.ca_certificates`` (the system's
default CAs are not trusted: a hospital's DICOM PKI is its own). TLS 1.2 is the floor (BCP 195); the listener
asks for a client certificate and, with ``require_client_certificate``, refuses a client without a valid one.
"""

from __future__ import annotations

import ssl

from dicomnode.config import PeerConfig, TlsSection

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def _base(tls: TlsSection, purpose: ssl.Purpose) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if purpose is ssl.Purpose.CLIENT_AUTH
                             else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = _VERSIONS[tls.minimum_version]
    if tls.certificate is not None and tls.private_key is not None:
        context.load_cert_chain(tls.certificate, tls.private_key)
    if tls.ca_certificates is not None:
        context.load_verify_locations(cafile=str(tls.ca_certificates))
    return context


def server_context(tls: TlsSection) -> ssl.SSLContext | None:
    """The listener's context, or None when ``tls.enabled`` is false."""
    if not tls.enabled:
        return None
    context = _base(tls, ssl.Purpose.CLIENT_AUTH)
    if tls.ca_certificates is not None:
        context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_certificate else ssl.CERT_OPTIONAL
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def client_tls_args(tls: TlsSection, peer: PeerConfig) -> tuple[ssl.SSLContext, str] | None:
    """``(context, server_hostname)`` for pynetdicom's ``associate(tls_args=...)``, or None for plain TCP.

    The peer's certificate must chain to ``tls.ca_certificates`` and name ``peer.host`` (DNS name or IP
    address in its subject alternative names).
    """
    if not peer.tls:
        return None
    context = _base(tls, ssl.Purpose.SERVER_AUTH)
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    return context, peer.host
