"""The SSRF rules: which addresses a receiver may resolve to."""

import pytest

from workers.webhooks.addresses import parse_allow, refusal


@pytest.mark.parametrize("address, reason", [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("172.31.255.255", "private"), ("192.168.1.1", "private"),
    ("fd12::1", "private"),
    ("169.254.169.254", "metadata"), ("fd00:ec2::254", "metadata"), ("100.100.100.200", "metadata"),
    ("169.254.1.1", "link_local"), ("fe80::1", "link_local"),
    ("100.64.0.1", "shared"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"), ("198.18.0.1", "reserved"),
    ("192.0.2.1", "reserved"),  # documentation range
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "metadata"),  # IPv4-mapped
    ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
])
def test_internal_addresses_are_refused_with_their_reason(address, reason):
    assert refusal(address) == reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "172.32.0.1", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address):
    assert refusal(address) is None


def test_an_allow_range_lets_a_refused_range_through_and_nothing_else():
    allow = parse_allow(["127.0.0.0/8"])
    assert refusal("127.0.0.1", allow) is None
    assert refusal("::1", allow) == "loopback"  # another family, another range
    assert refusal("10.0.0.1", allow) == "private"
    assert refusal("169.254.169.254", allow) == "metadata"
