import pathlib
import shutil
import subprocess
import sys

import pytest

UNIT = pathlib.Path(__file__).parent.parent / "systemd" / "textbackd.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    """systemd/textbackd.service is accepted by `systemd-analyze verify` (paths pointed at this venv)."""
    exe = pathlib.Path(sys.executable).parent / "textbackd"
    text = UNIT.read_text().replace("/opt/textbackd/bin/textbackd", str(exe))
    unit = tmp_path / "textbackd.service"
    unit.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # verify prints warnings on stderr even with exit 0; the unit must have none of its own
    assert "textbackd.service:" not in r.stderr, r.stderr


def test_unit_runs_as_its_own_user_with_hardening():
    """The unit runs unprivileged with a state directory, dialout access and the key hardening options."""
    text = UNIT.read_text()
    for line in (
        "User=textbackd",
        "StateDirectory=textbackd",
        "SupplementaryGroups=dialout",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
        "Type=notify",
    ):
        assert line in text.splitlines(), line
