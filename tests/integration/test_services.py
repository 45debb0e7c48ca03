"""producer/dev/services.py: a SeaweedFS killed with SIGKILL leaves nothing behind once cleaned up, and
a stopped one leaves nothing either: no unix socket in /tmp, no socket dir, logs in the log dir."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from producer.dev.services import WEED_PORTS, start_seaweedfs

pytestmark = pytest.mark.integration


def weed_sockets_in_tmp(port_base: int) -> list[Path]:
    ports = {str(port_base + i + offset) for i in range(WEED_PORTS) for offset in (0, 10000)}
    return [p for p in Path("/tmp").glob("seaweedfs-*.sock") if p.stem.rsplit("-", 1)[-1] in ports]


@pytest.mark.parametrize("how", ["stop", "sigkill"])
def test_seaweedfs_leaves_no_socket_behind(tmp_path, how):
    svc = start_seaweedfs(tmp_path / "data", "k", "secret-k", ["bucket-a"], tmp_path / "logs")
    base, sockets = svc.extra["port_base"], svc.extra["sockets"]
    assert sockets.is_relative_to(tmp_path) and (sockets / "s3.sock").exists()
    assert weed_sockets_in_tmp(base), "the check below could not fail: weed made no gRPC socket in /tmp"
    if how == "stop":
        svc.stop()
    else:
        svc.signal(signal.SIGKILL)
        svc.proc.wait(10)
        assert weed_sockets_in_tmp(base)  # what a killed weed leaves ...
        svc.cleanup()  # ... and what cleanup removes
    assert weed_sockets_in_tmp(base) == [] and not sockets.exists()
    assert list((tmp_path / "logs").glob("weed.*")), "weed's own log files belong in the log dir"
