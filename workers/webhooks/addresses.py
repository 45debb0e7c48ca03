"""Which addresses a webhook receiver may have: the SSRF rules (docs/WEBHOOKS.md), pure.

A tenant chooses the URL, and our deliverer runs inside our network, so a URL could aim it at
something only we can reach: Redis, the S3 server, the cloud's metadata service (credentials!), an
admin port on loopback. So every address a receiver's host resolves to is checked, at the moment the
socket connects (sender.py), not when the URL was added: a name that resolved to a public address
yesterday may resolve to 127.0.0.1 today (DNS rebinding). If any resolved address is refused, the
delivery is refused: the name is not ours to trust.

Refused, with the reason the delivery log shows:
    metadata       169.254.169.254, fd00:ec2::254 (AWS, GCP, Azure, OpenStack), 100.100.100.200 (Alibaba)
    loopback       127.0.0.0/8, ::1
    private        10/8, 172.16/12, 192.168/16, fc00::/7 (unique local)
    shared         100.64.0.0/10 (carrier-grade NAT; often internal in clouds)
    link_local     169.254.0.0/16, fe80::/10
    unspecified    0.0.0.0/8, ::  ("this host" on many systems)
    multicast      224.0.0.0/4, ff00::/8
    reserved       240.0.0.0/4, 255.255.255.255, 192.0.0.0/24, 198.18.0.0/15 (benchmarking), the
                   documentation ranges, and everything else Python's ipaddress calls not global
IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::/96) addresses are judged by the IPv4 address inside.
An address inside a configured allow range (WEBHOOK_ALLOW_CIDRS, e.g. 127.0.0.0/8 for tests) is allowed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_RULES: list[tuple[str, list[Network]]] = [
    ("loopback", [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128")]),
    ("private", [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")]),
    ("shared", [ipaddress.ip_network("100.64.0.0/10")]),
    ("link_local", [ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10")]),
    ("unspecified", [ipaddress.ip_network(n) for n in ("0.0.0.0/8", "::/128")]),
    ("multicast", [ipaddress.ip_network(n) for n in ("224.0.0.0/4", "ff00::/8")]),
]


def parse_allow(cidrs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _inner(ip: IP) -> IP:
    """The IPv4 address an IPv4-mapped or NAT64 IPv6 address carries; else the address itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def refusal(address: str | IP, allow: Iterable[Network] = ()) -> str | None:
    """Why a receiver may not have this address (a word from the table above), or None: allowed."""
    ip = _inner(ipaddress.ip_address(address) if isinstance(address, str) else address)
    if any(ip.version == net.version and ip in net for net in allow):
        return None
    if ip in METADATA:
        return "metadata"
    for reason, networks in _RULES:
        if any(ip.version == net.version and ip in net for net in networks):
            return reason
    if not ip.is_global:
        return "reserved"
    return None
