"""The shipped systemd units: rendered with the installation's values, hardened, and accepted by
systemd itself (``systemd-analyze verify`` and its offline security assessment)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from otward.cli.app import app
from otward.deploy.systemd import UNIT_FILES, SystemdOptions, render_units
from otward.errors import ConfigError

OTWARD = f"{sys.executable} -m otward"
HARDENING = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "SystemCallFilter=@system-service",
    "UMask=0077",
)


def _settings(text: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def test_units_run_as_the_dedicated_user_with_the_hardening_options():
    units = render_units(SystemdOptions(otward=OTWARD, data_dir=Path("/srv/otward"), user="pki"))
    assert sorted(units) == sorted(UNIT_FILES)
    for name, text in units.items():
        values = _settings(text)
        assert values["User"] == ["pki"], name
        assert values["Group"] == ["pki"], name
        for option in HARDENING:
            assert option in text.splitlines(), (name, option)
        assert "@" not in "".join(values["User"] + values["LimitNOFILE"]), name  # every placeholder filled
    serve = _settings(units["otward.service"])
    assert serve["ReadWritePaths"] == ["/srv/otward"]
    assert serve["ExecStart"][0].startswith(f"{OTWARD} serve --data /srv/otward --host 0.0.0.0 --port 8443")
    assert serve["CapabilityBoundingSet"] == [""]  # unprivileged ports: no capability at all
    assert serve["AmbientCapabilities"] == [""]
    assert serve["LimitNOFILE"] == ["2128"]  # two ports of 1000 connections, plus 128 files
    gateway = _settings(units["otward-gateway@.service"])
    assert gateway["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]  # Modbus/TCP Security: 802
    assert gateway["EnvironmentFile"] == ["/etc/otward/gateway-%i.env"]


def test_a_port_below_1024_keeps_only_the_bind_capability():
    units = render_units(SystemdOptions(otward=OTWARD, port=443, http_port=80, max_connections=5000))
    serve = _settings(units["otward.service"])
    assert serve["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert serve["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert serve["LimitNOFILE"] == ["10128"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"user": "root;rm"}, "--user", id="user"),
        pytest.param({"data_dir": Path("relative")}, "absolute", id="relative-data"),
        pytest.param({"data_dir": Path("/var/lib/my otward")}, "without spaces", id="space-in-data"),
        pytest.param({"port": 70000}, "--port", id="port"),
    ],
)
def test_values_a_unit_file_cannot_hold_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        render_units(SystemdOptions(otward=OTWARD, **options))


def test_deploy_systemd_takes_the_limit_from_the_data_directory(sqlite_pki, tmp_path):
    config = sqlite_pki.settings.data_dir / "config.toml"
    config.write_text(config.read_text() + "\n[server.limits]\nmax_connections = 3000\n")
    out = tmp_path / "units"
    result = CliRunner().invoke(
        app, ["deploy", "systemd", "--out", str(out), "--data", str(sqlite_pki.settings.data_dir)]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(UNIT_FILES)
    assert "LimitNOFILE=6128" in (out / "otward.service").read_text().splitlines()
    assert (out / "otward.service").stat().st_mode & 0o777 == 0o644


def test_systemd_accepts_the_units_and_rates_them_well_confined(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    out = tmp_path / "units"
    result = CliRunner().invoke(
        app, ["deploy", "systemd", "--out", str(out), "--otward", OTWARD, "--data", str(tmp_path / "data")]
    )
    assert result.exit_code == 0, result.output
    # Templates are checked through an instance, as systemd loads them.
    names = ("otward.service", "otward-gateway@line-1.service", "otward-edge@pump-7.service")
    units = [out / name for name in names]
    verify = subprocess.run(
        [analyze, "verify", *map(str, units)], capture_output=True, text=True, timeout=60, check=False
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    ours = [line for line in (verify.stdout + verify.stderr).splitlines() if "otward" in line]
    assert ours == []  # not one warning about our files (an unknown or misspelt key is one)
    for unit in units:
        security = subprocess.run(
            [analyze, "security", "--offline=true", str(unit)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security.stdout)
        assert found is not None, security.stdout + security.stderr
        assert float(found.group(1)) <= 2.5, security.stdout  # systemd rates up to 2.9 "OK"
