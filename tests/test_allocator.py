"""The allocator setting made at start-up."""

from __future__ import annotations

import platform

import pytest

from cluster_exporter.allocator import fix_mmap_threshold


def test_mmap_threshold_is_pinned_on_glibc_unless_the_operator_set_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert fix_mmap_threshold() is False, "the operator's own setting wins"
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    assert fix_mmap_threshold() is (platform.libc_ver()[0] == "glibc")
