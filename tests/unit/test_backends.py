"""The portal's database and channel layer, as SFCLOUD_DATABASE_URL and
SFCLOUD_REDIS_URL choose them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from portal import backends


def test_one_process_needs_only_sqlite_and_memory(tmp_path: Path) -> None:
    database = backends.database(None, sqlite=tmp_path / "db.sqlite3",
                                 sqlite_for_tests=tmp_path / "test.sqlite3")
    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert database["NAME"] == tmp_path / "db.sqlite3"
    assert database["TEST"] == {"NAME": str(tmp_path / "test.sqlite3")}
    assert backends.channel_layer(None) == {"BACKEND": "channels.layers.InMemoryChannelLayer"}


@pytest.mark.parametrize("url,expected", [
    ("postgresql://sfcloud:p%40ss@db.example:5433/cloud?sslmode=require",
     {"NAME": "cloud", "USER": "sfcloud", "PASSWORD": "p@ss", "HOST": "db.example",
      "PORT": "5433", "OPTIONS": {"sslmode": "require", "pool": True}}),
    ("postgres:///cloud?host=/run/postgresql",
     {"NAME": "cloud", "USER": "", "PASSWORD": "", "HOST": "/run/postgresql", "PORT": "",
      "OPTIONS": {"pool": True}}),
])
def test_several_processes_share_postgresql(tmp_path: Path, url: str,
                                            expected: dict[str, object]) -> None:
    database = backends.database(url, sqlite=tmp_path / "unused",
                                 sqlite_for_tests=tmp_path / "unused")
    assert database == {"ENGINE": "django.db.backends.postgresql", "CONN_MAX_AGE": 0,
                        **expected}


def test_and_redis_for_the_channel_layer() -> None:
    assert backends.channel_layer("redis://10.0.0.5:6379/0") == {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": ["redis://10.0.0.5:6379/0"]}}
    # The extra is installed for the tests, so the layer really loads.
    assert importlib.util.find_spec("channels_redis.core") is not None


def test_a_missing_package_stops_the_portal_saying_which(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: None if name == "channels_redis" else real_find_spec(name))
    with pytest.raises(SystemExit, match=r"SFCLOUD_REDIS_URL needs the channels_redis package "
                                         r"\(.venv/bin/pip install -e '.\[multi\]'\)"):
        backends.channel_layer("redis://localhost")
