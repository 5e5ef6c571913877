"""`textbackd --version` and doctor's version line: the package, the store schema (built in and on disk), Python."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys

from test_doctor import write

from textbackd import __version__, doctor
from textbackd.store.db import SCHEMA_VERSION, Store
from textbackd.store.db import file_schema as store_file_schema


def write_config(tmp_path) -> tuple[str, object]:
    """A config (doctor's test one, no PBX listening) and the store path it names."""
    return write(tmp_path, ami_port=9), tmp_path / "db" / "textbackd.db"


def version_output(config: str) -> str:
    env = dict(os.environ, TEXTBACKD_CONFIG=config)
    r = subprocess.run([sys.executable, "-m", "textbackd", "--version"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_version_names_package_schema_and_python(tmp_path):
    """--version prints the package version, the schema this build writes, the store file's schema and Python's version."""
    config, db = write_config(tmp_path)
    Store(db).close()
    out = version_output(config)
    lines = out.splitlines()
    assert lines[0] == f"textbackd {__version__}"
    assert lines[1].startswith(f"store schema {SCHEMA_VERSION}; {db} (from ")
    assert lines[1].endswith(f": schema {SCHEMA_VERSION}")
    assert lines[2].startswith(f"Python {platform.python_version()} (")


def test_version_says_when_the_store_is_newer_and_leaves_no_files(tmp_path):
    """A store written by a newer textbackd is named as such, and reading it creates no -wal or -shm file."""
    config, db = write_config(tmp_path)
    Store(db).close()
    c = sqlite3.connect(db)
    c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    c.close()
    before = sorted(os.listdir(db.parent))
    out = version_output(config)
    assert f"schema {SCHEMA_VERSION + 1}, written by a newer textbackd: this one refuses it" in out
    assert sorted(os.listdir(db.parent)) == before


def test_store_file_schema_of_a_missing_and_an_older_store(tmp_path):
    """A store not created yet says so; an older one says it will be migrated on start."""
    assert store_file_schema(str(tmp_path / "none.db")) == "no store yet"
    db = tmp_path / "old.db"
    Store(db).close()
    c = sqlite3.connect(db)
    c.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    c.close()
    assert store_file_schema(str(db)) == f"schema {SCHEMA_VERSION - 1}, migrated to {SCHEMA_VERSION} when the daemon starts"


def test_version_without_a_loadable_config_uses_the_default_store_path(tmp_path):
    """With no config to read, --version still answers, naming the default store path and why."""
    out = version_output(str(tmp_path / "missing.toml"))
    assert f"textbackd {__version__}" in out
    assert "/var/lib/textbackd/textbackd.db (the default: " in out


async def test_doctor_reports_the_version_facts(tmp_path):
    """doctor ends with a version line: package, store schema and the file's, Python."""
    config, _ = write_config(tmp_path)
    results = await doctor.check_all(config, timeout=1)
    last = results[-1]
    assert last.check == "version" and last.ok is True
    assert last.verdict == (f"textbackd {__version__}, store schema {SCHEMA_VERSION} "
                            f"(the file: schema {SCHEMA_VERSION}), Python {platform.python_version()}")
