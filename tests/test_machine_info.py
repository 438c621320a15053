"""Every benchmark names its CPU: generation and matrix units, not only a VM's model name."""

from bench.machine_info import cpu_description

ZEN5 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni avx_vnni

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 99
model name\t: not the first CPU
"""

ZEN4 = ZEN5.replace("cpu family\t: 26", "cpu family\t: 25").replace("model\t\t: 2", "model\t\t: 17")

SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
stepping\t: 8
flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni amx_bf16 amx_tile amx_int8
"""


def test_two_amd_generations_with_one_model_name_are_told_apart():
    assert cpu_description(ZEN5) == (
        "AMD EPYC (Zen 5: family 26 model 2 stepping 1; AVX512, AVX512-BF16, AVX512-VNNI, AVX-VNNI)"
    )
    assert cpu_description(ZEN4).startswith("AMD EPYC (Zen 4: family 25 model 17 stepping 1;")


def test_intel_names_its_matrix_units():
    assert cpu_description(SAPPHIRE_RAPIDS) == (
        "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz (family 6 model 143 stepping 8; "
        "AMX, AVX512, AVX512-BF16, AVX512-VNNI)"
    )


def test_a_cpu_without_the_fast_units_or_cpuinfo_fields_says_so():
    assert cpu_description("model name\t: Some ARM core\nflags\t: fp asimd\n") == ("Some ARM core (no AVX512/AMX/VNNI)")
