"""insid3-serve's arguments: ports out of range and ports in use fail in one line, before any
model loads; the port it reports is the port it listens on; Ray's flags need --ray."""

import os
import re
import socket
import subprocess
import sys

import pytest

from insid3.engine.cli import serve as cli
from insid3.engine.serve.launch import free_port
from insid3.engine.serve.server import bind_listener


@pytest.mark.parametrize("port", ["0", "99999", "-1", "http"])
def test_a_port_outside_1_to_65535_is_a_usage_error(port, capsys):
    assert cli.main(["--bundle", "b", "--port", port]) == 2
    assert "--port" in capsys.readouterr().err.strip().splitlines()[-1]


def test_a_port_in_use_fails_before_the_model_loads(tiny_bundle, monkeypatch, capsys):
    def must_not_load(*_, **__):
        raise AssertionError("the model was loaded before the port was checked")

    monkeypatch.setattr("insid3.engine.runtime.segmenter.Segmenter.from_bundle", must_not_load)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = cli.main(["--bundle", str(tiny_bundle), "--port", str(port)])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"insid3-serve: error: cannot listen on 127.0.0.1:{port}: Address already in use"


def test_an_unknown_host_is_named(tiny_bundle, capsys):
    assert cli.main(["--bundle", str(tiny_bundle), "--host", "no-such-host.invalid", "--port", "8000"]) == 2
    assert capsys.readouterr().err.strip().startswith("insid3-serve: error: --host no-such-host.invalid cannot be resolved")


def test_the_listener_is_the_requested_port():
    port = free_port()
    listener = bind_listener("127.0.0.1", port)
    try:
        assert listener.getsockname() == ("127.0.0.1", port)
    finally:
        listener.close()


def test_help_shows_every_default():
    result = subprocess.run([sys.executable, "-m", "insid3.engine.cli.serve", "--help"],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "250"})
    assert result.returncode == 0
    entries = [entry.split()[0] + " " + " ".join(entry.split()) for entry in re.split(r"\n  (?=--)", result.stdout)[1:]]
    flags = ("--ray", "--bundle", "--debug", "--access-log")  # on/off switches, and the one required option
    flags += ("--svd-components", "--tau", "--merge-threshold")  # their group's title: "(default: the bundle's...)"
    flags += ("--profile",)  # no default: "wherever the command line gives none", the bundle's values
    assert "hyperparameters (default: the bundle's" in result.stdout
    undocumented = [entry for entry in entries if "(default:" not in entry and entry.split()[0] not in flags]
    assert len(entries) >= 15 and not undocumented, undocumented
    assert "(default: 8000)" in result.stdout and "(default: 127.0.0.1)" in result.stdout


@pytest.mark.parametrize("flags, named", [(["--num-replicas", "2"], "--num-replicas"),
                                          (["--address", "auto", "--replica-cpus", "2"], "--address, --replica-cpus")])
def test_ray_flags_without_ray_are_one_line(flags, named, capsys):
    assert cli.main(["--bundle", "no-such-bundle", *flags]) == 2
    assert capsys.readouterr().err.strip() == f"insid3-serve: error: {named} apply to --ray"


def test_old_and_new_spellings_of_the_ray_address_are_one_option():
    from insid3.engine.cli.arguments import new_parser

    parser = new_parser("insid3 serve", None)
    cli.configure(parser)
    for spelling in ("--address", "--ray-address"):
        assert parser.parse_args(["--bundle", "b", spelling, "head:6379"]).ray_address == "head:6379"
