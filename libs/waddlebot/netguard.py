"""Outgoing-URL guard: webhook targets must not become a way into the private network.

Link-local and cloud-metadata addresses are always refused; loopback and private
ranges only when ``WEBHOOK_ALLOW_PRIVATE_NETWORKS`` is true. :func:`check_url` runs
when a URL is stored (400 at creation) and again on the resolved address at call time.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from .web import ValidationError

_ALWAYS_REFUSED = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::/32"),
    ipaddress.ip_network("0.0.0.0/8"),
)


def _address_refused(address: str, allow_private: bool) -> str | None:
    ip = ipaddress.ip_address(address)
    if getattr(ip, "ipv4_mapped", None):
        ip = ip.ipv4_mapped
    if any(ip in net for net in _ALWAYS_REFUSED) or ip.is_multicast or ip.is_unspecified:
        return f"{ip} is a link-local, metadata or reserved address"
    if not allow_private and (ip.is_private or ip.is_loopback or ip.is_reserved):
        return f"{ip} is a private or loopback address"
    return None


def check_url(url: str, *, allow_private: bool, field: str = "url", resolve: bool = False) -> str:
    """Validate an http(s) URL against the guard; raise ValidationError naming ``field``."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValidationError(f"{field} must be an http(s) URL", field=field)
    host = urlsplit(url).hostname
    if not host:
        raise ValidationError(f"{field} has no host", field=field)
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        if host in ("localhost",) or host.endswith(".localhost"):
            addresses = ["127.0.0.1"]
        elif not resolve:
            return url
        else:
            try:
                infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
            except socket.gaierror:
                raise ValidationError(
                    f"{field} host {host!r} does not resolve", field=field
                ) from None
            addresses = sorted({info[4][0] for info in infos})
    for address in addresses:
        problem = _address_refused(address, allow_private)
        if problem:
            raise ValidationError(f"{field} refused: {problem}", field=field)
    return url
