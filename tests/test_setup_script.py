"""scripts/setup.sh says which PyTorch it installs: the CPU index when it answers, pip's default
index (said so) when it does not, the CUDA build with --cuda; checked with --dry-run, which
prints the pip commands instead of running them."""

from __future__ import annotations

import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).parents[1] / "scripts" / "setup.sh"


def _setup(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "METALOSS_PROBE_SECONDS": "2", **env},
    )


@pytest.fixture
def index_url(tmp_path: Path) -> Iterator[str]:
    """A local HTTP server standing in for a reachable PyTorch CPU index (it lists torch)."""
    (tmp_path / "whl" / "cpu" / "torch").mkdir(parents=True)
    (tmp_path / "whl" / "cpu" / "torch" / "index.html").write_text("<html></html>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/whl/cpu"
    finally:
        server.shutdown()
        server.server_close()


def _pip_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("would run:")]


def test_reachable_cpu_index_is_used_for_torch_only(index_url: str) -> None:
    done = _setup(METALOSS_TORCH_INDEX_URL=index_url)
    assert done.returncode == 0, done.stderr
    assert f"torch==2.13.0 CPU build from {index_url}" in done.stdout
    pip = _pip_lines(done.stdout)
    assert any("torch==2.13.0 --index-url " + index_url in line for line in pip)
    assert pip[-1] == "would run: python -m pip install --quiet -e ."  # the package: default index


def test_unreachable_index_falls_back_to_the_default_and_says_so() -> None:
    done = _setup("dev", METALOSS_TORCH_INDEX_URL="http://127.0.0.1:9/whl/cpu")
    assert done.returncode == 0, done.stderr
    assert "did not answer within 2s; torch==2.13.0 from pip's default index" in done.stdout
    assert "CUDA build" in done.stdout  # honest about what PyPI's default wheel is
    pip = _pip_lines(done.stdout)
    assert "would run: python -m pip install --quiet torch==2.13.0" in pip
    assert pip[-1] == "would run: python -m pip install --quiet -e .[dev]"


@pytest.mark.parametrize("how", [("--cuda",), ()])
def test_cuda_flag_or_variable_skips_the_cpu_index(how: tuple[str, ...], index_url: str) -> None:
    env = {"METALOSS_TORCH_INDEX_URL": index_url}
    if not how:
        env["METALOSS_CUDA"] = "1"
    done = _setup(*how, "dev", **env)
    assert done.returncode == 0, done.stderr
    assert "--cuda: torch==2.13.0 from pip's default index" in done.stdout
    assert not any("--index-url" in line for line in _pip_lines(done.stdout))


def test_unknown_arguments_are_one_line() -> None:
    done = _setup("--gpu")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "setup.sh: unknown argument '--gpu' (expected dev, --cuda, --dry-run)"
    )
