"""Shared by the benchmarks: machine description and writing a section of BENCHMARKS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def machine() -> str:
    """One line about this machine."""
    import torch

    from recranker.tuning.model import cpu_flags

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    isa = vector_isa(cpu_flags())
    return (f"{os.cpu_count()} cores ({cpu}{', ' + isa if isa else ''}), {mem:.0f} GiB RAM, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def vector_isa(flags: frozenset[str] | set[str]) -> str:
    """The widest vector instructions among the CPU's `flags` (machines of one name differ: the
    same "AMD EPYC" has come both with AVX-512 and bfloat16 and with AVX2 only)."""
    from recranker.tuning.model import BF16_FLAGS

    if "avx512f" in flags:
        return "AVX-512" + (" with BF16" if flags & BF16_FLAGS else "")
    return "AVX2" if "avx2" in flags else ("" if not flags else "no AVX2")


def write_section(name: str, body: str, command: str) -> None:
    """Replace (or append) the section `name` of BENCHMARKS.md with `body`, stamped with the
    command, machine and date."""
    stamp = f"Command: `{command}`  \nMachine: {machine()}  \nDate: {dt.date.today().isoformat()}\n\n"
    block = f"<!-- bench:{name} -->\n{stamp}{body.rstrip()}\n<!-- /bench:{name} -->"
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n\nEach section is written by the script in `bench/` that it names.\n"
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + f"\n\n## {name}\n\n{block}\n"
    tmp = BENCHMARKS.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(BENCHMARKS)
