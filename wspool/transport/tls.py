"""TLS configuration: websocket-client's ``sslopt`` dictionary to an :class:`ssl.SSLContext`.

Secure by default: with no options the context comes from
:func:`ssl.create_default_context`, so certificates and host names are verified
against the system trust store.  That store is OpenSSL's default verify paths, which
honour the ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` environment variables.  Passing
``ca_certs`` or ``ca_cert_path`` replaces the system store with the given certificates.
As in websocket-client, the ``WEBSOCKET_CLIENT_CA_BUNDLE`` environment variable (read
at each connect) names a CA file (used as ``ca_certs``) or a hashed CA directory (used
as ``ca_cert_path``) when ``sslopt`` names neither; a ready ``context`` ignores it.

Recognised ``sslopt`` keys (the websocket-client names):

``cert_reqs``
    ``ssl.CERT_REQUIRED`` (default), ``ssl.CERT_OPTIONAL`` or ``ssl.CERT_NONE``;
    ``CERT_NONE`` turns off certificate verification *and* the host name check.
``check_hostname``
    ``False`` keeps certificate verification but skips the host name check.
``ca_certs`` / ``ca_cert_path``
    a CA bundle file (a directory is accepted too) / a hashed CA directory.
``certfile``, ``keyfile``, ``password``
    the client certificate chain for servers that require one.
``ciphers``, ``ecdh_curve``
    OpenSSL cipher list / elliptic curve name.
``ssl_version`` (alias ``protocol``)
    a ``ssl.PROTOCOL_*`` constant or a :class:`ssl.TLSVersion`, mapped to the
    context's ``minimum_version``; TLS 1.0 and 1.1 are refused as insecure.
``server_hostname``
    the name sent in SNI and checked against the certificate (see
    :func:`server_hostname_for`).
``context``
    a ready :class:`ssl.SSLContext`, used as it is.  It cannot be combined with the
    keys above except ``server_hostname``: configure the context itself instead.
``do_handshake_on_connect``, ``suppress_ragged_eofs``
    accepted for compatibility when ``True`` (wspool always behaves that way).

Every context wspool builds offers ALPN ``http/1.1``.  Any other key raises
:class:`~wspool.exceptions.WebSocketConfigurationException` naming it.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Final

from wspool.exceptions import WebSocketConfigurationException, WebSocketTLSException
from wspool.transport.url import WebSocketURL

__all__ = [
    "SSLOPT_KEYS",
    "build_ssl_context",
    "server_hostname_for",
    "shared_ssl_context",
    "tls_handshake_error",
]

# OpenSSL X509 verify codes for a host name / IP address that the certificate does not name
_NAME_MISMATCH_CODES = (62, 64)

_CONTEXT_SHAPING_KEYS = frozenset(
    {
        "cert_reqs",
        "check_hostname",
        "ca_certs",
        "ca_cert_path",
        "certfile",
        "keyfile",
        "password",
        "ciphers",
        "ecdh_curve",
        "ssl_version",
        "protocol",
    }
)
_COMPAT_TRUE_KEYS = frozenset({"do_handshake_on_connect", "suppress_ragged_eofs"})

#: Every ``sslopt`` key wspool understands.
SSLOPT_KEYS = _CONTEXT_SHAPING_KEYS | _COMPAT_TRUE_KEYS | {"server_hostname", "context"}


def build_ssl_context(
    sslopt: Mapping[str, Any] | None,
    context: ssl.SSLContext | None = None,
    *,
    url: str | None = None,
) -> ssl.SSLContext:
    """Return the client :class:`ssl.SSLContext` described by ``sslopt``.

    ``context`` (or ``sslopt["context"]``) is a ready context supplied by the caller;
    it is returned unchanged, never modified.  ``url`` (credential-free) is attached to
    any :class:`~wspool.exceptions.WebSocketConfigurationException` raised.
    """
    options: Mapping[str, Any] = sslopt if sslopt is not None else {}
    if not isinstance(options, Mapping):
        raise WebSocketConfigurationException(
            f"sslopt must be a dict such as {{'ca_certs': '/path/ca.pem'}}, "
            f"not {type(options).__name__}",
            url=url,
        )
    for key in options:
        if key not in SSLOPT_KEYS:
            known = ", ".join(sorted(SSLOPT_KEYS))
            raise WebSocketConfigurationException(
                f"unknown sslopt key {key!r}; the known keys are: {known}", url=url
            )
    for key in _COMPAT_TRUE_KEYS & options.keys():
        if options[key] is not True:
            raise WebSocketConfigurationException(
                f"sslopt[{key!r}]={options[key]!r} is not supported: wspool always "
                "behaves as if it were True; remove the key",
                url=url,
            )
    if "server_hostname" in options and not isinstance(options["server_hostname"], str):
        raise WebSocketConfigurationException(
            f"sslopt['server_hostname'] must be a str, not "
            f"{type(options['server_hostname']).__name__}",
            url=url,
        )

    ready = options.get("context")
    if ready is not None or context is not None:
        if ready is not None and context is not None and ready is not context:
            raise WebSocketConfigurationException(
                "two SSLContexts were given (sslopt['context'] and the context argument); "
                "pass only one",
                url=url,
            )
        chosen = context if context is not None else ready
        if not isinstance(chosen, ssl.SSLContext):
            raise WebSocketConfigurationException(
                f"sslopt['context'] must be an ssl.SSLContext, not {type(chosen).__name__}",
                url=url,
            )
        clashing = sorted(_CONTEXT_SHAPING_KEYS & options.keys())
        if clashing:
            raise WebSocketConfigurationException(
                f"sslopt keys {clashing} cannot be combined with a ready SSLContext; "
                "configure the context itself instead",
                url=url,
            )
        return chosen
    return _build(options, url)


# Contexts built from equal sslopt dicts are shared: a default context loads the whole
# CA store, far too much memory and time to repeat for thousands of connections.
# Bounded, least recently used first out, so programs that vary sslopt do not grow it
# without end.  Built under the lock, so threads opening at once build it once.
_SHARED_CONTEXTS_MAX: Final = 32
_shared_contexts: OrderedDict[Any, ssl.SSLContext] = OrderedDict()
_shared_contexts_lock = threading.Lock()


def shared_ssl_context(
    sslopt: Mapping[str, Any] | None,
    context: ssl.SSLContext | None = None,
    *,
    url: str | None = None,
) -> ssl.SSLContext:
    """:func:`build_ssl_context`, shared between callers with equal ``sslopt`` (a
    ready ``context`` is returned as it is)."""
    if context is not None or (sslopt and "context" in sslopt):
        return build_ssl_context(sslopt, context, url=url)
    sslopt = _with_env_bundle(sslopt)
    key = None if not sslopt else tuple(sorted((k, repr(v)) for k, v in sslopt.items()))
    with _shared_contexts_lock:
        shared = _shared_contexts.get(key)
        if shared is not None:
            _shared_contexts.move_to_end(key)
            return shared
        shared = _shared_contexts[key] = build_ssl_context(sslopt, None, url=url)
        while len(_shared_contexts) > _SHARED_CONTEXTS_MAX:
            _shared_contexts.popitem(last=False)
        return shared


#: websocket-client's environment variable for a CA file or directory.
CA_BUNDLE_ENV: Final = "WEBSOCKET_CLIENT_CA_BUNDLE"


def _with_env_bundle(sslopt: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """``sslopt`` with ``WEBSOCKET_CLIENT_CA_BUNDLE`` applied where it gives no CA."""
    path = os.environ.get(CA_BUNDLE_ENV)
    if not path:
        return sslopt
    options = dict(sslopt or {})
    if options.get("ca_certs") is not None or options.get("ca_cert_path") is not None:
        return sslopt  # the caller's own CA choice is the whole trust store
    if os.path.isfile(path):
        options["ca_certs"] = path
    elif os.path.isdir(path):
        options["ca_cert_path"] = path
    else:
        return sslopt  # a path that does not exist is ignored, as in websocket-client
    return options


def server_hostname_for(host: str, sslopt: Mapping[str, Any] | None) -> str | None:
    """The name for SNI and the certificate check: ``sslopt["server_hostname"]`` or ``host``.

    For an IP address literal :mod:`ssl` sends no SNI (RFC 6066 §3 forbids it) but
    still checks the address against the certificate.
    """
    if sslopt:
        override = sslopt.get("server_hostname")
        if override is not None:
            return str(override)
    return host


def tls_handshake_error(
    exc: OSError, url: WebSocketURL, server_hostname: str | None
) -> WebSocketTLSException:
    """The :class:`~wspool.exceptions.WebSocketTLSException` for a failed TLS handshake.

    Shared by the blocking driver and the pool; the caller chains ``exc`` (``raise ...
    from exc``).  The message says what failed and which option fixes it.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        if exc.verify_code in _NAME_MISMATCH_CODES:
            message = (
                f"certificate verify failed: {detail} for {url.redacted} (checked name "
                f"{server_hostname!r}) — connect with a name the certificate was issued for, "
                "set sslopt={'server_hostname': ...}, or fix the server certificate"
            )
        else:
            message = (
                f"certificate verify failed: {detail} for {url.redacted} "
                "— pass sslopt={'ca_certs': ...} or fix the server certificate"
            )
    elif isinstance(exc, ssl.SSLError):
        message = (
            f"TLS handshake with {url.authority} failed: {exc.reason or exc}; check that the "
            "server speaks TLS on this port and the sslopt settings (ciphers, versions, "
            "client certificate)"
        )
    else:
        message = f"connection failed during the TLS handshake with {url.authority}: {exc}"
    return WebSocketTLSException(message, url=url.redacted)


def _build(options: Mapping[str, Any], url: str | None) -> ssl.SSLContext:
    ca_certs = options.get("ca_certs")
    ca_cert_path = options.get("ca_cert_path")
    # websocket-client also accepts a directory in ca_certs
    if ca_certs is not None and ca_cert_path is None and os.path.isdir(ca_certs):
        ca_certs, ca_cert_path = None, ca_certs
    try:
        if ca_certs is None and ca_cert_path is None:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        else:
            ctx = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH, cafile=ca_certs, capath=ca_cert_path
            )
    except (OSError, ssl.SSLError) as exc:
        raise WebSocketConfigurationException(
            f"cannot load the CA certificates (ca_certs={ca_certs!r}, "
            f"ca_cert_path={ca_cert_path!r}): {exc}; check the path and PEM contents",
            url=url,
        ) from exc

    _apply_verification(ctx, options, url)
    _apply_protocol(ctx, options, url)

    certfile = options.get("certfile")
    keyfile = options.get("keyfile")
    password = options.get("password")
    if certfile is None and (keyfile is not None or password is not None):
        raise WebSocketConfigurationException(
            "sslopt 'keyfile'/'password' need 'certfile' (the client certificate) too",
            url=url,
        )
    if certfile is not None:
        try:
            ctx.load_cert_chain(certfile, keyfile, password)
        except (OSError, ssl.SSLError) as exc:
            raise WebSocketConfigurationException(
                f"cannot load the client certificate (certfile={certfile!r}, "
                f"keyfile={keyfile!r}): {exc}; check the paths, PEM contents and password",
                url=url,
            ) from exc

    ciphers = options.get("ciphers")
    if ciphers is not None:
        try:
            ctx.set_ciphers(ciphers)
        except ssl.SSLError as exc:
            raise WebSocketConfigurationException(
                f"sslopt['ciphers']={ciphers!r} selects no usable cipher: {exc}", url=url
            ) from exc
    curve = options.get("ecdh_curve")
    if curve is not None:
        try:
            ctx.set_ecdh_curve(curve)
        except (ValueError, TypeError) as exc:
            raise WebSocketConfigurationException(
                f"sslopt['ecdh_curve']={curve!r} is not a known curve: {exc}", url=url
            ) from exc

    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _apply_verification(ctx: ssl.SSLContext, options: Mapping[str, Any], url: str | None) -> None:
    cert_reqs = options.get("cert_reqs", ssl.CERT_REQUIRED)
    try:
        if isinstance(cert_reqs, bool):
            raise ValueError(cert_reqs)
        verify_mode = ssl.VerifyMode(cert_reqs)
    except ValueError as exc:
        raise WebSocketConfigurationException(
            f"sslopt['cert_reqs']={cert_reqs!r} is not ssl.CERT_NONE, ssl.CERT_OPTIONAL "
            "or ssl.CERT_REQUIRED",
            url=url,
        ) from exc
    check_hostname = options.get("check_hostname")
    if check_hostname is not None and not isinstance(check_hostname, bool):
        raise WebSocketConfigurationException(
            f"sslopt['check_hostname'] must be True or False, not {check_hostname!r}", url=url
        )
    if verify_mode == ssl.CERT_NONE:
        if check_hostname:
            raise WebSocketConfigurationException(
                "sslopt check_hostname=True needs certificate verification, but "
                "cert_reqs=ssl.CERT_NONE turns it off; drop one of them",
                url=url,
            )
        # the host name check must be off before verification can be
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return
    ctx.verify_mode = verify_mode
    if check_hostname is not None:
        ctx.check_hostname = check_hostname


def _apply_protocol(ctx: ssl.SSLContext, options: Mapping[str, Any], url: str | None) -> None:
    if "ssl_version" in options and "protocol" in options:
        raise WebSocketConfigurationException(
            "sslopt 'ssl_version' and 'protocol' are the same option; pass only one", url=url
        )
    key = "ssl_version" if "ssl_version" in options else "protocol"
    value = options.get(key)
    if value is None:
        return
    accepted, minimum = _minimum_version_for(value)
    if not accepted:
        raise WebSocketConfigurationException(
            f"sslopt[{key!r}]={value!r} is not supported: use ssl.PROTOCOL_TLS_CLIENT, "
            "ssl.PROTOCOL_TLSv1_2, ssl.TLSVersion.TLSv1_2 or ssl.TLSVersion.TLSv1_3 "
            "(TLS 1.0/1.1 and SSL are insecure and refused)",
            url=url,
        )
    if minimum is not None:
        ctx.minimum_version = minimum


def _minimum_version_for(value: Any) -> tuple[bool, ssl.TLSVersion | None]:
    """Map an ``ssl_version`` value to ``(accepted, minimum TLS version or None to keep)``."""
    if isinstance(value, ssl.TLSVersion):
        return value in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3), value
    if not isinstance(value, int) or isinstance(value, bool):
        return False, None
    if value in (int(ssl.PROTOCOL_TLS_CLIENT), int(ssl.PROTOCOL_TLS)):
        # the generic client protocols keep the default minimum (TLS 1.2 since 3.10)
        return True, None
    tls12 = getattr(ssl, "PROTOCOL_TLSv1_2", None)
    if tls12 is not None and value == int(tls12):
        # websocket-client users pinned TLS 1.2 this way; allowing 1.3 too only adds safety
        return True, ssl.TLSVersion.TLSv1_2
    return False, None
