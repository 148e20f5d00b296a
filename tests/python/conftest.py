"""Shared fixtures of the Python package's tests: the `tq` CLI they compare against.

TQ_BINARY names the tq executable (CTest sets it to the one it built); without it the tests that
compare with the CLI are skipped and the rest still run (e.g. right after `pip install .`).
"""

import json
import os
import subprocess

import pytest


@pytest.fixture(scope="session")
def tq_cli():
    path = os.environ.get("TQ_BINARY")
    if not path or not os.access(path, os.X_OK):
        pytest.skip("TQ_BINARY (the tq CLI to compare with) is not set")

    def run(*args, check=True):
        env = dict(os.environ, OMP_WAIT_POLICY="passive")
        proc = subprocess.run([path, *map(str, args)], capture_output=True, text=True, env=env)
        if check and proc.returncode != 0:
            raise AssertionError(f"tq {' '.join(map(str, args))} failed: {proc.stderr}")
        return proc

    run.json = lambda *args: json.loads(run(*args, "--json").stdout)
    return run
