"""featmap.io.storage.storage_options: object storage fails fast. An unreachable S3 endpoint is one line after
two attempts with a 5 s connect timeout, not after botocore's default five attempts with back-off; a user's own
retry settings win."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featmap.io.storage import S3_ATTEMPTS, S3_CONNECT_SECONDS, filesystem, storage_options

FAST = {"connect_timeout": 5.0, "retries": {"mode": "standard", "total_max_attempts": 2}}


@pytest.fixture
def plain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(name, raising=False)


def test_s3_gets_two_attempts_and_a_connect_timeout(plain_env: None) -> None:
    pytest.importorskip("fsspec", reason="the dask extra is not installed: pip install '.[dask]'")  # README's test venv
    assert (S3_ATTEMPTS, S3_CONNECT_SECONDS) == (2, 5.0)
    assert storage_options("s3://bucket/maps/") == {"config_kwargs": FAST}
    assert storage_options("S3A://bucket/maps/") == {"config_kwargs": FAST}
    assert storage_options("memory://x") == storage_options("gs://b/x") == {}


def test_the_users_retry_settings_win(plain_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fsspec")
    from fsspec.config import conf

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "7")
    assert storage_options("s3://b/x") == {"config_kwargs": {"connect_timeout": 5.0}}
    monkeypatch.delenv("AWS_MAX_ATTEMPTS")
    monkeypatch.setitem(conf, "s3", {"config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 9}}})
    assert storage_options("s3://b/x") == {"config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 9}}}


def test_the_s3_client_is_configured_with_them(plain_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("s3fs", reason="s3fs is not installed: pip install '.[dask]'")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    fs, path = filesystem("s3://featmap-options/x.png")
    assert path == "featmap-options/x.png"
    fs.connect()  # the botocore client, made without a request
    config = fs.s3.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 2} and config.connect_timeout == 5.0


def test_an_unreachable_endpoint_without_retry_settings_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("s3fs")
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(tmp_path / "a.png")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_ACCESS_KEY_ID="k",
        AWS_SECRET_ACCESS_KEY="s",
        AWS_ENDPOINT_URL="http://127.0.0.1:9",  # the discard port: nothing listens
    )
    args = [sys.executable, "-m", "featmap", "apply", str(tmp_path / "a.png"), "-k", "sobel_x", "-o", "s3://b/out/"]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("featmap: error: s3://b/out/: cannot reach the object storage endpoint (")
    assert line.endswith("; check AWS_ENDPOINT_URL (or FSSPEC_S3_ENDPOINT_URL) and that the server is running")
