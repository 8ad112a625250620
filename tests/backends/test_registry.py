"""Backends are found by name: built in, or offered by any installed package's entry point."""

from __future__ import annotations

import sys
import textwrap

import pytest

from optimem import OpticalMemory
from optimem.backends import ENTRY_POINT_GROUP, backend_class, backend_names, get_backend
from optimem.backends.testing import TestDoubleBackend
from optimem.errors import BackendUnavailable, UnknownBackend


@pytest.fixture
def installed_package(tmp_path, monkeypatch):
    """A package installed the way pip leaves one (a module and its .dist-info), offering a
    backend through the entry-point group, and one entry that points at no Backend class."""
    (tmp_path / "acme_ocr.py").write_text(
        textwrap.dedent(
            """
            from optimem.backends.testing import TestDoubleBackend

            class AcmeOcr(TestDoubleBackend):
                name = "acme-ocr"

            NOT_A_BACKEND = 3
            """
        )
    )
    info = tmp_path / "acme_ocr-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-ocr\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nacme-ocr = acme_ocr:AcmeOcr\nbroken = acme_ocr:NOT_A_BACKEND\n"
        "missing = acme_ocr_not_installed:Thing\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("acme_ocr", None)


def test_a_package_backend_is_chosen_by_name(installed_package, tmp_path):
    assert {"acme-ocr", "cpu", "test-double"} <= set(backend_names())
    assert backend_class("acme-ocr").__name__ == "AcmeOcr"
    mem = OpticalMemory(tmp_path / "m.db", backend="acme-ocr", decode="now")
    s = mem.session("t")
    s.add_turns([("user", "The replica db-replica-03 is ready.")])
    s.compress(flush=True)
    assert s.recall_page(s.pages()[0].id).backend == "acme-ocr"
    mem.close()


def test_bad_entries_say_what_is_wrong(installed_package):
    with pytest.raises(UnknownBackend, match="no Backend class"):
        backend_class("broken")
    with pytest.raises(BackendUnavailable, match="acme_ocr_not_installed"):
        backend_class("missing")
    with pytest.raises(UnknownBackend, match=r"choose one of .*acme-ocr"):
        backend_class("nope")


def test_built_ins_need_no_entry_point():
    assert isinstance(get_backend("test-double"), TestDoubleBackend)
    assert "deepseek-ocr2" in backend_names()


def test_a_worker_process_gets_its_share_of_the_cores(monkeypatch):
    """Several worker processes on one machine: each CPU engine gets cores ÷ processes threads
    (at least one), a backend without a `threads` option is built as usual."""
    import os

    from optimem.backends import worker_backend

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3}, raising=False)
    one = worker_backend("cpu", 4)
    assert (one.latin.workers, one.cjk.threads, one.blurred.threads) == (1, 1, 1)
    two = worker_backend("cpu", 2)
    assert (two.latin.workers, two.cjk.threads, two.blurred.threads) == (2, 2, 2)
    assert worker_backend("cpu", 8) is one  # never below one thread; built once per process
    assert worker_backend("test-double", 2) is get_backend("test-double")
    assert worker_backend(one, 2) is one
