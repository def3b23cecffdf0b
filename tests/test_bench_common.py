"""The benchmarks' machine stamp names the CPU's vector instructions: two machines called "AMD EPYC"
here differed in them (AVX-512 with bfloat16 vs AVX2 only), which changes every timing and what
`ranking.dtype: auto` resolves to."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from _common import machine, vector_isa  # noqa: E402


def test_vector_isa_names_the_widest_instructions() -> None:
    assert vector_isa({"avx2", "avx512f", "avx512_bf16"}) == "AVX-512 with BF16"
    assert vector_isa({"avx2", "avx512f", "amx_bf16"}) == "AVX-512 with BF16"
    assert vector_isa({"avx2", "avx512f"}) == "AVX-512"
    assert vector_isa({"avx", "avx2", "fma"}) == "AVX2"
    assert vector_isa({"sse4_2"}) == "no AVX2"
    assert vector_isa(set()) == ""  # flags not readable: say nothing rather than guess


def test_the_machine_line_carries_the_cores_and_memory() -> None:
    line = machine()
    assert line.startswith(f"{os.cpu_count()} cores (")
    assert "GiB RAM" in line and "torch " in line
