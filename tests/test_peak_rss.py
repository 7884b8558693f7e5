"""Peak RSS in MiB on every platform: ``ru_maxrss`` is KiB on Linux and bytes on macOS."""

from __future__ import annotations

import resource
import sys
import types

import pytest

from autopeft.trials import device, executor, proxy

MIB_512 = 512 * 2**20  # bytes


def _fake_rusage(monkeypatch, platform: str, maxrss: int) -> None:
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(resource, "getrusage", lambda who: types.SimpleNamespace(ru_maxrss=maxrss))


@pytest.mark.parametrize("platform, maxrss", [("linux", MIB_512 // 1024), ("darwin", MIB_512)])
def test_peak_rss_is_mib_on_linux_and_macos(monkeypatch, platform, maxrss):
    _fake_rusage(monkeypatch, platform, maxrss)
    assert device.peak_rss_mb() == pytest.approx(512.0)
    assert device.Placement("cpu", "fp32").peak_memory_mb() == (pytest.approx(512.0), "cpu_peak_rss")


def test_the_trial_and_its_failure_path_measure_with_the_same_function():
    assert proxy.peak_rss_mb is device.peak_rss_mb
    assert executor.peak_rss_mb is device.peak_rss_mb
