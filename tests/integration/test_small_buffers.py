"""Small TCP buffers (a low net.ipv4.tcp_rmem): busy sessions must not stall. A receive queue
that fills with bytes the gateway already relayed but left queued shuts the sender's window,
and then nothing comes that could wake the read again. The scenario runs in a network
namespace of its own (small_buffers_netns.py), so the sysctls touch nothing else."""
import json
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def namespace_unavailable():
    if os.geteuid() != 0:
        return "needs root: a network namespace of its own and its tcp_rmem"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare (util-linux) and ip (iproute2)"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, timeout=10)
    if probe.returncode != 0:
        return f"unshare -n fails here: {probe.stderr.strip()}"
    return None


def test_busy_sessions_survive_a_slow_backend_with_small_buffers():
    reason = namespace_unavailable()
    if reason:
        pytest.skip(reason)
    # 20 sessions: 50 round trips of 64 B, then 2,000 messages of 64 B-1 KiB each while the
    # backend stops reading for 1 s and the gateway for 0.5 s; 30 s for all of it (it takes
    # about 4).
    done = subprocess.run(
        ["unshare", "-n", sys.executable, os.path.join(HERE, "small_buffers_netns.py"),
         "20", "50", "2000", "30"],
        capture_output=True, text=True, timeout=90)
    lines = done.stdout.strip().splitlines()
    assert lines, f"the scenario printed nothing (exit {done.returncode}):\n{done.stderr[-4000:]}"
    result = json.loads(lines[-1])
    assert result["stalled"] == 0 and not result["errors"], (
        f"{result['stalled']} of {result['sessions']} sessions stalled, errors "
        f"{result['errors']}; messages back per session (of {result['messages_sent']}): "
        f"{result['messages_back']}; sockets with bytes queued (Recv-Q, Send-Q, local, peer): "
        f"{result['queued'][:5]}")
    assert result["in_order"] == result["sessions"], result
    assert result["gateway_exit"] == 0 and not result["crashed"], done.stderr[-4000:]
    assert done.returncode == 0, done.stderr[-4000:]
