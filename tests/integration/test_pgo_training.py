"""The training of the profile-guided build (scripts/pgo-train.sh, run by scripts/build.sh): it
drives the gateway through the bench's loads and stops it cleanly, and where it cannot run (no
loopback) it fails within seconds and says what failed, so that the build falls back to a plain
one. A build keeps its profile, so a change to the gateway is not trained again: these tests run
the training on the binary under test every time."""
import os
import subprocess
import time

import pytest

from conftest import ROOT, WSGATE
from test_small_buffers import namespace_unavailable

TRAIN = os.path.join(ROOT, "scripts", "pgo-train.sh")
BUILD = os.path.dirname(os.path.abspath(WSGATE))


def bench_tools_missing():
    for tool in ("wsgate-loadgen", "wsgate-bench-echo"):
        if not os.access(os.path.join(BUILD, "bench", tool), os.X_OK):
            return (f"{BUILD} has no bench/{tool}: only a build that trained "
                    "(scripts/build.sh) or ran the bench has the training's tools")
    return None


def train(*prefix, timeout):
    started = time.monotonic()
    done = subprocess.run([*prefix, TRAIN, BUILD], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    return done, time.monotonic() - started


def test_training_runs_every_load_and_stops_the_gateway_cleanly():
    reason = bench_tools_missing()
    if reason:
        pytest.skip(reason)
    # About 18 s of load, each step bounded by `timeout`, then SIGTERM and the gateway's exit
    # status: a step that fails or a gateway that crashes fails the training.
    done, took = train(timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pgo-train: trained on 127.0.0.1:" in done.stdout
    assert 10 < took < 60, f"the training took {took:.1f} s"


def test_training_without_a_loopback_fails_fast_and_says_why():
    reason = bench_tools_missing() or namespace_unavailable()
    if reason:
        pytest.skip(reason)
    # A network namespace of its own whose loopback is down: nothing can listen on 127.0.0.1.
    done, took = train("unshare", "-n", timeout=60)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "pgo-train: cannot connect to 127.0.0.1:" in done.stderr, done.stderr
    assert took < 10, f"failing took {took:.1f} s"
