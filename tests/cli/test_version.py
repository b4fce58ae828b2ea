"""``sk-decaf --version`` and ``python -m sk_decaf``."""

import subprocess
import sys

import pytest

import sk_decaf
from sk_decaf.cli import main


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"sk-decaf {sk_decaf.__version__}\n"


def test_python_dash_m_runs_the_command_line():
    done = subprocess.run([sys.executable, "-m", "sk_decaf", "--version"], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout) == (0, f"sk-decaf {sk_decaf.__version__}\n")
    done = subprocess.run([sys.executable, "-m", "sk_decaf"], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "usage: sk-decaf" in done.stderr
