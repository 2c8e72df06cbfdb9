"""``waddlebot.netguard``: webhook targets cannot reach metadata or private addresses."""

from __future__ import annotations

import socket

import pytest

from waddlebot import netguard
from waddlebot.netguard import check_url
from waddlebot.web import ValidationError


def _refused(url, *, allow_private: bool, field: str = "url", resolve: bool = False) -> str:
    with pytest.raises(ValidationError) as caught:
        check_url(url, allow_private=allow_private, field=field, resolve=resolve)
    assert caught.value.field == field
    return caught.value.message


ALWAYS_REFUSED = [
    "http://169.254.169.254/latest/meta-data/",
    "https://169.254.169.254:443/",
    "http://169.254.1.1/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[fe80::1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://224.0.0.1/",
]


@pytest.mark.parametrize("url", ALWAYS_REFUSED)
@pytest.mark.parametrize("allow_private", [False, True])
def test_metadata_and_link_local_always_refused(url, allow_private):
    message = _refused(url, allow_private=allow_private, field="webhook_url")
    assert message.startswith("webhook_url refused")


PRIVATE = [
    "http://10.0.0.1/hook",
    "http://127.0.0.1:8000/",
    "http://192.168.1.10/",
    "http://172.16.0.5/",
    "http://[::1]:8080/",
    "http://[fd12:3456::1]/",
    "http://[::ffff:10.0.0.1]/",
    "http://localhost:9000/",
    "http://LOCALHOST/",
    "http://api.localhost/",
]


@pytest.mark.parametrize("url", PRIVATE)
def test_private_refused_unless_allowed(url):
    assert "private or loopback" in _refused(url, allow_private=False)
    assert check_url(url, allow_private=True) == url


@pytest.mark.parametrize(
    "url", ["https://8.8.8.8/", "http://1.1.1.1:8080/x", "https://[2606:4700::1111]/"]
)
def test_public_addresses_pass(url):
    assert check_url(url, allow_private=False) == url


def test_public_hostname_passes_without_resolving():
    assert check_url("https://hooks.example.org/x", allow_private=False) == (
        "https://hooks.example.org/x"
    )


@pytest.mark.parametrize(
    "url",
    [
        "ftp://8.8.8.8/",
        "file:///etc/passwd",
        "gopher://8.8.8.8/",
        "javascript:alert(1)",
        "//8.8.8.8/",
        "8.8.8.8",
        "",
        None,
        123,
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
def test_non_http_schemes_refused(url, allow_private):
    assert "http(s) URL" in _refused(url, allow_private=allow_private, field="endpoint_url")


def test_url_without_host_refused():
    assert "no host" in _refused("http:///path", allow_private=True)


def _fake_resolver(monkeypatch, table: dict[str, list[str]]):
    def getaddrinfo(host, port, *args, **kwargs):
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, 0)) for ip in table[host]]

    monkeypatch.setattr(netguard.socket, "getaddrinfo", getaddrinfo)


def test_resolved_addresses_are_checked(monkeypatch):
    _fake_resolver(
        monkeypatch,
        {
            "metadata.evil.example": ["169.254.169.254"],
            "intranet.example": ["10.1.2.3"],
            "mixed.example": ["93.184.216.34", "127.0.0.1"],
            "public.example": ["93.184.216.34"],
        },
    )
    for allow_private in (False, True):
        _refused("http://metadata.evil.example/", allow_private=allow_private, resolve=True)
    _refused("http://intranet.example/", allow_private=False, resolve=True)
    assert check_url("http://intranet.example/", allow_private=True, resolve=True)
    # one bad address among several is enough to refuse (DNS rebinding)
    _refused("http://mixed.example/", allow_private=False, resolve=True)
    assert check_url("https://public.example/x", allow_private=False, resolve=True)
    message = _refused("http://nowhere.example/", allow_private=True, resolve=True)
    assert "does not resolve" in message
