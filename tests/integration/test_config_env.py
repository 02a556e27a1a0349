"""`${VAR}` and `${VAR:-default}` in the config file come from wsgate's environment."""
import os
import subprocess

from conftest import WSGATE, app_config
from wsproto import TEXT, RawClient, encode_frame


def test_addresses_come_from_the_environment(start_gateway, backends):
    port, _ = backends.echo()
    text = app_config([port]).replace(f'"127.0.0.1:{port}"',
                                      '"${BACKEND_HOST:-127.0.0.1}:${BACKEND_PORT}"')
    os.environ["BACKEND_PORT"] = str(port)
    try:
        gw = start_gateway(text)
    finally:
        del os.environ["BACKEND_PORT"]
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(TEXT, "via env"))
    assert c.read_message()[1] == b"via env"


def test_an_unset_variable_is_an_error_naming_it_at_its_line(tmp_path):
    path = tmp_path / "env.yaml"
    path.write_text(app_config([1]).replace('"127.0.0.1:1"', '"127.0.0.1:${NO_SUCH_PORT}"'))
    env = {k: v for k, v in os.environ.items() if k != "NO_SUCH_PORT"}
    out = subprocess.run([WSGATE, "--check", "--config", str(path)], capture_output=True,
                         text=True, timeout=10, env=env)
    assert out.returncode != 0
    line = next(i + 1 for i, l in enumerate(path.read_text().splitlines())
                if "NO_SUCH_PORT" in l)
    assert f"env.yaml:{line}:" in out.stderr, out.stderr
    assert "${NO_SUCH_PORT} is not set" in out.stderr
