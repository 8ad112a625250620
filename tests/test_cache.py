"""optimem's one cache folder: where it is, and that what is built once per machine lands there."""

from __future__ import annotations

import subprocess
import sys

import pytest

from optimem import tokens
from optimem.cache import cache_dir
from optimem.errors import OptimemError


def test_the_folder_is_the_variable_then_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OPTIMEM_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir() == tmp_path / "home" / ".cache" / "optimem"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "optimem"
    monkeypatch.setenv("OPTIMEM_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_token_encodings_land_in_the_same_folder_as_the_spelling_index(tmp_path):
    code = "from optimem.tokens import count_tokens; print(count_tokens('hello world'))"
    env = {"XDG_CACHE_HOME": str(tmp_path), "HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2"]
    assert len(list((tmp_path / "optimem" / "tiktoken").iterdir())) == 1


def test_an_unwritable_folder_sends_the_encodings_to_a_temporary_one(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("OPTIMEM_CACHE_DIR", str(blocker))
    monkeypatch.setattr(tokens.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    assert tokens._cache_dir() == tmp_path / "tmp" / "optimem-cache" / "tiktoken"
    monkeypatch.setattr(tokens.tempfile, "gettempdir", lambda: str(blocker))
    with pytest.raises(OptimemError, match="OPTIMEM_CACHE_DIR"):
        tokens._cache_dir()
