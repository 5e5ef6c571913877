import subprocess
import sys

from textbackd import __version__
from textbackd.cli import main


def test_version_prints_and_exits_zero(capsys):
    """`textbackd --version` prints the package version."""
    try:
        main(["--version"])
    except SystemExit as e:
        assert e.code == 0
    assert __version__ in capsys.readouterr().out


def test_python_dash_m_runs_the_cli():
    """`python -m textbackd --help` works like the console script."""
    out = subprocess.run([sys.executable, "-m", "textbackd", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "usage: textbackd" in out.stdout
