"""privsdk's training commands set torch's CPU memory up before torch is imported (privsdk.torch_memory)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from privsdk.cli import TORCH_TRAINING_COMMANDS, main
from privsdk.torch_memory import HUGE_PAGES_VARIABLE, keep_freed_memory, prefer_huge_pages

pytest.importorskip("torch")

# page faults of filling a fresh 64 MB tensor (past glibc's mmap threshold: a new mapping every time)
_FAULTS = """
import resource, torch
torch.ones(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.empty(16 << 20, dtype=torch.float32).fill_(1.0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
_THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"


def _thp_mode() -> str:
    try:
        text = open(_THP_MODE).read()
    except OSError:
        return "absent"
    return text[text.index("[") + 1:text.index("]")] if "[" in text else text.strip()


def test_prefer_huge_pages_sets_the_variable_and_keeps_a_users_choice():
    env = {}
    prefer_huge_pages(env)
    assert env == {HUGE_PAGES_VARIABLE: "1"}
    user = {HUGE_PAGES_VARIABLE: "0"}
    assert prefer_huge_pages(user) is False  # the user's 0 stays and huge pages are not used
    assert user == {HUGE_PAGES_VARIABLE: "0"}


def test_prefer_huge_pages_says_when_torch_came_first():
    import torch  # noqa: F401  (already imported: the allocator has read its setting)

    assert prefer_huge_pages({}) is False


def test_the_training_commands_set_it_up_and_the_runtime_does_not(monkeypatch, capsys):
    monkeypatch.delenv(HUGE_PAGES_VARIABLE, raising=False)
    assert main(["filters"]) == 0  # a runtime command: the process's memory is left as it was
    assert HUGE_PAGES_VARIABLE not in os.environ
    assert main(["eval", "merge"]) != 0  # refused (no reports), after the setup
    assert os.environ[HUGE_PAGES_VARIABLE] == "1"
    assert {"train", "eval", "export", "distill-identity"} == TORCH_TRAINING_COMMANDS


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt: Linux only")
def test_keep_freed_memory_takes_on_glibc():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip(f"not glibc ({platform.libc_ver()}): mallopt is glibc's")
    assert keep_freed_memory() is True


@pytest.mark.skipif(_thp_mode() != "madvise", reason=f"the kernel's transparent huge pages are "
                    f"{_thp_mode()!r} ({_THP_MODE}): torch's switch changes the page faults only under 'madvise'")
def test_torch_faults_a_large_tensor_in_huge_pages_only_when_asked():
    faults = {}
    for setting in ("0", "1"):
        env = dict(os.environ, **{HUGE_PAGES_VARIABLE: setting})
        done = subprocess.run([sys.executable, "-c", _FAULTS], env=env, capture_output=True, text=True, check=True)
        faults[setting] = int(done.stdout.strip().splitlines()[-1])
    assert faults["0"] >= 16 << 20 >> 10  # 64 MB in 4 KB pages: one fault each
    assert faults["1"] * 5 < faults["0"], faults


def test_bench_attacker_times_both_settings(tmp_path, capsys):
    out = tmp_path / "attacker.json"
    assert main(["bench", "attacker", "--steps", "1", "--batch", "4", "--rounds", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [r["memory"] for r in data["rows"]] == ["torch defaults", "privsdk"]
    assert all(r["ms_per_step"] > 0 and r["runs"] == 1 for r in data["rows"]) and data["speedup"] > 0
    assert "privsdk's settings:" in capsys.readouterr().out


def test_bench_attacker_refuses_zero_steps(capsys):
    assert main(["bench", "attacker", "--steps", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
