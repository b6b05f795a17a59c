"""Ray token auth on a head, and a driver that would join it without the token: refused up front in
one line that names the mismatch, instead of Ray's 20 s of retries blamed on the head. The token
files are real files in a temporary home; no cluster is started (a head takes ~10 s to start here)."""

import sys
import time

import pytest
from helpers import ROOT, invoke

if str(ROOT) not in sys.path:  # benchmark/ is a repository tool, imported from the repository root
    sys.path.insert(0, str(ROOT))

from benchmark import ray_backend, run_suite  # noqa: E402

TOKEN = "0123456789abcdef" * 4


@pytest.fixture
def home(tmp_path):
    """A home directory holding Ray's default token file, as `ray get-auth-token --generate` leaves it."""
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text(TOKEN)
    return tmp_path


def test_a_token_without_the_auth_mode_is_named_as_the_mismatch(home):
    why = ray_backend.token_mismatch("head:6379", {"HOME": str(home)})
    assert why == (
        f"Ray token auth mismatch: a Ray token is set up here ({home}/.ray/auth_token) but RAY_AUTH_MODE "
        "is not set, so this driver would join head:6379 without it and a head started with that token "
        "refuses it; set RAY_AUTH_MODE=token (or RAY_AUTH_MODE=disabled if the head runs without token "
        "auth) and run again"
    )
    # the address from the environment, as ray.init reads it
    assert "would join h2:1 without" in ray_backend.token_mismatch(
        None, {"HOME": str(home), "RAY_ADDRESS": "h2:1"}
    )


def test_the_other_token_sources_count_too(tmp_path):
    env = {"HOME": str(tmp_path)}  # no ~/.ray/auth_token
    assert ray_backend.token_mismatch("head:6379", env) is None
    assert "(RAY_AUTH_TOKEN)" in ray_backend.token_mismatch("head:6379", {**env, "RAY_AUTH_TOKEN": TOKEN})
    path = tmp_path / "cluster-token"
    assert ray_backend.token_mismatch("head:6379", {**env, "RAY_AUTH_TOKEN_PATH": str(path)}) is None
    path.write_text(TOKEN)
    assert f"({path})" in ray_backend.token_mismatch("head:6379", {**env, "RAY_AUTH_TOKEN_PATH": str(path)})


def test_no_mismatch_where_ray_sets_the_mode_itself_or_the_user_did(home):
    env = {"HOME": str(home)}
    for address in (None, "auto", "local"):  # Ray turns token auth on for a Ray it finds or starts here
        assert ray_backend.token_mismatch(address, env) is None
    for mode in ("token", "disabled"):
        assert ray_backend.token_mismatch("head:6379", {**env, "RAY_AUTH_MODE": mode}) is None


def test_the_suite_is_refused_up_front_in_one_line(home, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("HOME", str(home))
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    start = time.time()
    code, out, err = invoke(
        run_suite.main,
        "tiny",
        "--backend",
        "ray",
        "--address",
        "127.0.0.1:9",
        "--runs-dir",
        tmp_path / "runs",
    )
    assert code == 2 and err.count("\n") == 1, out + err
    assert "Ray token auth mismatch" in err and "set RAY_AUTH_MODE=token" in err
    assert time.time() - start < 10  # before Ray's 20 s of retries
    assert "[submit]" not in out and list((tmp_path / "runs").iterdir()) == []
