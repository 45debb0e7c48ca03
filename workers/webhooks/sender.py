"""One webhook POST: to an address vetted when the socket connects, within a timeout, never a redirect.

http.client, not httpx: its connection classes open their socket through one overridable call
(`_create_connection`), so the host is resolved, every address checked (addresses.py) and the socket
connected to a checked address in one step. There is no window between the check and the connect
in which a rebinding DNS answer could swap the address; TLS still verifies the certificate against
the URL's host name (SNI). Each socket operation has the timeout, the whole attempt twice it. A 3xx is a failure (`redirect`): following it would go to a URL nobody
checked. The answer's body is read up to MAX_ANSWER_BYTES and ignored.

    post(url, body, headers, timeout_s, allow) -> Attempt(ok, status, reason, detail, latency_ms)

Nothing here raises for a receiver's behaviour: every failure is an Attempt with a
enums.DeliveryFailure reason, which the deliverer schedules for a retry.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from workers.core.enums import DeliveryFailure
from workers.webhooks.addresses import Network, refusal

MAX_ANSWER_BYTES = 4096
USER_AGENT = "tenderscan-webhooks/1"
Resolver = Callable[..., list]  # socket.getaddrinfo's signature


@dataclass(frozen=True)
class Attempt:
    ok: bool  # 2xx
    status: int | None  # the HTTP status, if one came back
    reason: str | None  # a DeliveryFailure value when not ok
    detail: str  # for the delivery log: the refused address, the exception's name
    latency_ms: float


class Refused(OSError):
    """The receiver's host resolves to an address the SSRF rules refuse (or to nothing)."""

    def __init__(self, reason: DeliveryFailure, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def guarded_connect(allow: tuple[Network, ...], resolve: Resolver = socket.getaddrinfo):
    """A replacement for http.client's socket.create_connection that resolves, vets, then connects."""

    def connect(address: tuple[str, int], timeout: float | None = None, source_address=None) -> socket.socket:
        host, port = address
        try:
            infos = resolve(host, port, 0, socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise Refused(DeliveryFailure.DNS_FAILURE, f"{host}: {exc}") from None
        addrs = list(dict.fromkeys((info[0], info[4][0]) for info in infos))
        for _, ip in addrs:
            why = refusal(ip.split("%")[0], allow)  # a zone index (fe80::1%eth0) is not part of the address
            if why:
                raise Refused(DeliveryFailure.BLOCKED_ADDRESS, f"{host} -> {ip} ({why})")
        last: OSError = Refused(DeliveryFailure.DNS_FAILURE, f"{host}: no address")
        for family, ip in addrs:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect((ip, port))
                return sock
            except OSError as exc:
                sock.close()
                last = exc
        raise last

    return connect


def _hang_up(conn: http.client.HTTPConnection, fired: threading.Event) -> None:
    fired.set()
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)


def post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float, allow: Iterable[Network] = (),
         resolve: Resolver = socket.getaddrinfo, tls: ssl.SSLContext | None = None) -> Attempt:
    start = time.perf_counter()

    def done(ok: bool, status: int | None, reason: str | None, detail: str = "") -> Attempt:
        return Attempt(ok, status, reason, detail, round((time.perf_counter() - start) * 1000, 1))

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return done(False, None, DeliveryFailure.BAD_URL, url[:200])
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    kwargs = {"context": tls or ssl.create_default_context()} if parts.scheme == "https" else {}
    try:
        conn = cls(parts.hostname, parts.port, timeout=timeout_s, **kwargs)
    except ValueError as exc:  # a bad port
        return done(False, None, DeliveryFailure.BAD_URL, str(exc))
    conn._create_connection = guarded_connect(tuple(allow), resolve)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # Each socket operation has timeout_s; the whole attempt has twice that, so a receiver that drips its
    # answer a byte at a time cannot hold a deliverer thread (or outlive the claim's lease).
    fired = threading.Event()  # set once the deadline hung up: whatever was read after is not an answer
    deadline = threading.Timer(2 * timeout_s, _hang_up, (conn, fired))
    deadline.daemon = True
    deadline.start()
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json", "User-Agent": USER_AGENT,
                                                       **headers})
        answer = conn.getresponse()
        answer.read(MAX_ANSWER_BYTES)
        status = answer.status
    except Refused as exc:
        return done(False, None, exc.reason, exc.detail)
    except TimeoutError:
        return done(False, None, DeliveryFailure.TIMEOUT, f"no answer within {timeout_s:g} s")
    except (OSError, http.client.HTTPException) as exc:  # refused, reset, TLS, a malformed answer
        if fired.is_set():
            return done(False, None, DeliveryFailure.TIMEOUT, f"no whole answer within {2 * timeout_s:g} s")
        return done(False, None, DeliveryFailure.CONNECT_FAILED, type(exc).__name__)
    finally:
        deadline.cancel()
        conn.close()
    if fired.is_set():  # a hang-up mid-headers can read as a short, "complete" answer: it is not one
        return done(False, None, DeliveryFailure.TIMEOUT, f"no whole answer within {2 * timeout_s:g} s")
    if 200 <= status < 300:
        return done(True, status, None)
    if 300 <= status < 400:
        return done(False, status, DeliveryFailure.REDIRECT, "redirects are not followed")
    return done(False, status, DeliveryFailure.HTTP_STATUS, f"HTTP {status}")
