"""One POST against a real HTTP server on loopback: success, failures, redirects, hangs, SSRF refusals."""

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from workers.webhooks.addresses import parse_allow
from workers.webhooks.sender import post

LOOPBACK = parse_allow(["127.0.0.0/8"])


@pytest.fixture()
def receiver():
    """A server whose answer the test sets: `state["status"]`, `state["sleep"]`, `state["location"]`."""
    state = {"status": 200, "sleep": 0.0, "location": None, "requests": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state["requests"].append((self.path, dict(self.headers), body))
            time.sleep(state["sleep"])
            self.send_response(state["status"])
            if state["location"]:
                self.send_header("Location", state["location"])
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.handle_error = lambda *args: None  # the timeout test hangs up on purpose
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_port}/hook?x=1"
    state["port"] = server.server_port
    yield state
    server.shutdown()
    server.server_close()


def resolving_to(*ips):
    def resolve(host, port, *args):
        return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in ips]
    return resolve


def test_a_2xx_is_delivered_with_the_headers_and_the_body(receiver):
    a = post(receiver["url"], b'{"a":1}', {"webhook-id": "msg_1"}, 2.0, LOOPBACK)
    assert a.ok and a.status == 200 and a.reason is None and a.latency_ms > 0
    path, headers, body = receiver["requests"][0]
    assert path == "/hook?x=1" and body == b'{"a":1}' and headers["webhook-id"] == "msg_1"
    assert headers["Content-Type"] == "application/json"


def test_loopback_is_refused_without_an_allow_range_and_nothing_is_sent(receiver):
    a = post(receiver["url"], b"{}", {}, 2.0)
    assert not a.ok and a.reason == "blocked_address" and "loopback" in a.detail
    assert receiver["requests"] == []


def test_a_500_is_a_failure_to_retry(receiver):
    receiver["status"] = 500
    a = post(receiver["url"], b"{}", {}, 2.0, LOOPBACK)
    assert not a.ok and a.status == 500 and a.reason == "http_status"


def test_a_redirect_is_a_failure_and_is_not_followed(receiver):
    receiver["status"], receiver["location"] = 302, receiver["url"] + "&followed=1"
    a = post(receiver["url"], b"{}", {}, 2.0, LOOPBACK)
    assert not a.ok and a.status == 302 and a.reason == "redirect"
    assert len(receiver["requests"]) == 1


def test_a_hanging_receiver_times_out(receiver):
    receiver["sleep"] = 1.5
    start = time.monotonic()
    a = post(receiver["url"], b"{}", {}, 0.3, LOOPBACK)
    assert not a.ok and a.reason == "timeout" and time.monotonic() - start < 1.2


def test_the_address_is_checked_when_the_socket_connects_not_when_the_url_was_added(receiver):
    url = f"http://hooks.example.com:{receiver['port']}/x"
    # the name now resolves to our loopback receiver: with the allow range it connects to that address
    a = post(url, b"{}", {}, 2.0, LOOPBACK, resolve=resolving_to("127.0.0.1"))
    assert a.ok and receiver["requests"][-1][1]["Host"] == f"hooks.example.com:{receiver['port']}"
    # rebinding to a metadata or private address, or a public answer mixed with an internal one: refused
    for ips in (("169.254.169.254",), ("10.0.0.7",), ("93.184.215.14", "127.0.0.1")):
        a = post(url, b"{}", {}, 2.0, resolve=resolving_to(*ips))
        assert not a.ok and a.reason == "blocked_address", ips
    assert len(receiver["requests"]) == 1


def test_unresolvable_hosts_and_bad_urls_fail_cleanly():
    def no_such_host(*args):
        raise socket.gaierror(-2, "Name or service not known")
    assert post("http://nowhere.invalid/x", b"{}", {}, 1.0, resolve=no_such_host).reason == "dns_failure"
    assert post("ftp://example.com/x", b"{}", {}, 1.0).reason == "bad_url"
    assert post("http:///x", b"{}", {}, 1.0).reason == "bad_url"


def test_a_closed_port_is_a_connect_failure():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    a = post(f"http://127.0.0.1:{port}/", b"{}", {}, 1.0, LOOPBACK)
    assert not a.ok and a.reason == "connect_failed"


def test_a_receiver_that_drips_its_answer_is_cut_off_at_twice_the_timeout():
    """Each read gets a byte in time, so only the attempt's own deadline can stop it."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    stop = threading.Event()

    def drip():
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while not stop.is_set():
            try:
                conn.sendall(b"X-Drip: 1\r\n")
            except OSError:
                break
            time.sleep(0.1)
        conn.close()

    threading.Thread(target=drip, daemon=True).start()
    start = time.monotonic()
    a = post(f"http://127.0.0.1:{srv.getsockname()[1]}/", b"{}", {}, 0.4, LOOPBACK)
    stop.set()
    srv.close()
    assert not a.ok and a.reason == "timeout" and 0.7 < time.monotonic() - start < 2.0


def test_https_verifies_the_certificate_against_the_urls_name_not_the_address(tmp_path):
    import ssl

    from tests.tls import make_pki
    from workers.webhooks.sender import post as send

    pki = make_pki(tmp_path)  # a server certificate for localhost / 127.0.0.1
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (BaseHTTPRequestHandler,), {
        "do_POST": lambda self: (self.rfile.read(int(self.headers["Content-Length"])), self.send_response(204),
                                 self.end_headers()),
        "log_message": lambda self, *a: None}))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki.server_cert, pki.server_key)
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    server.handle_error = lambda *args: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client_ctx = ssl.create_default_context(cafile=str(pki.ca))
    port = server.server_port
    try:
        ok = send(f"https://localhost:{port}/x", b"{}", {}, 2.0, LOOPBACK, resolve=resolving_to("127.0.0.1"),
                  tls=client_ctx)
        assert ok.ok and ok.status == 204
        wrong = send(f"https://hooks.example.com:{port}/x", b"{}", {}, 2.0, LOOPBACK,
                     resolve=resolving_to("127.0.0.1"), tls=client_ctx)
        assert not wrong.ok and wrong.reason == "connect_failed"  # the certificate does not name it
    finally:
        server.shutdown()
        server.server_close()
