"""`gsc-pipeline`: a tooling command without its extra says what to install, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gsc_pipeline.cli import COMMAND_EXTRAS, missing_extras

ROOT = Path(__file__).resolve().parents[1]


def _cli(argv: list[str], hidden: tuple[str, ...], cwd: Path) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh process where the `hidden` modules cannot be imported (as on a
    production install): sys.modules[name] = None makes both find_spec and import fail."""
    script = (
        "import sys\n"
        f"for name in {hidden!r}:\n"
        "    sys.modules[name] = None\n"
        "from gsc_pipeline.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "hidden", "install"),
    [
        (["bench", "--size", "smoke"], ("psutil",), "pip install 'gsc-pipeline[bench]'"),
        (["bench", "--size", "agency"], ("matplotlib",), "pip install 'gsc-pipeline[bench]'"),
        (["bench"], ("psutil", "aiohttp"), "pip install 'gsc-pipeline[bench,emulator]'"),
        (["demo"], ("aiohttp",), "pip install 'gsc-pipeline[emulator]'"),
        (["ui"], ("jwt",), "pip install 'gsc-pipeline[emulator]'"),
        (["emulator", "--port", "0"], ("aiohttp",), "pip install 'gsc-pipeline[emulator]'"),
        (["multihost"], ("aiohttp",), "pip install 'gsc-pipeline[emulator]'"),
    ],
)
def test_a_tooling_command_without_its_extra_names_the_extra(tmp_path, argv, hidden, install):
    out = _cli([*argv, *(["--out", "report"] if argv[0] in ("bench", "multihost") else [])],
               hidden, tmp_path)  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert install in out.stderr
    assert all(name in out.stderr for name in hidden)
    assert "Traceback" not in out.stderr
    # Refused before starting anything: no report folder, no demo workdir.
    assert list(tmp_path.iterdir()) == []


def test_help_and_the_production_commands_need_no_extra(tmp_path):
    hidden = ("psutil", "matplotlib", "aiohttp", "jwt")
    out = _cli(["bench", "--help"], hidden, tmp_path)
    assert out.returncode == 0 and "--size" in out.stdout, out.stderr
    bad_config = tmp_path / "missing.yaml"
    # The doctor runs (and reports the missing config file) on a production install.
    out = _cli(["doctor", "--config", str(bad_config)], hidden, tmp_path)
    assert out.returncode == 1 and "[FAIL] config" in out.stdout, out.stderr
    assert "Traceback" not in out.stderr, out.stderr


def test_with_the_test_extra_every_command_has_what_it_needs():
    """`make install` installs `.[test]`, which pulls the bench and emulator extras."""
    assert {command: missing_extras(command) for command in COMMAND_EXTRAS} == dict.fromkeys(
        COMMAND_EXTRAS
    )
