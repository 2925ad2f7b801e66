// Which vector instruction set the CPU kernels use. The build targets x86-64-v3 (AVX2/FMA) and every
// kernel has that version; a few hot kernels also have an AVX-512 version (F/BW/VL), compiled into the
// same binary with per-function target attributes and chosen here at run time, so one binary runs on
// both kinds of CPU. On top of AVX-512, Intel's AMX (tile matrix multiply, bf16) runs the bf16 matmuls of
// decode batches (bf16_amx.h). GPTOSS_CPU_ISA=avx2 or avx512 forces the lesser kernels (to compare, or to
// rule them out).
#pragma once

namespace gptoss::cpu {

enum class Isa { avx2, avx512, amx };  // each includes the ones before it

// Whether this CPU and OS run `isa` (AVX-512 also needs the OS to save the zmm and mask registers; AMX
// needs the OS to grant this process the tile state, which the first call asks for).
bool isa_supported(Isa isa);

// The instruction set the kernels use now: the best supported one, or GPTOSS_CPU_ISA (avx2 | avx512 | amx; an
// unknown or unsupported value is an error naming the variable and the choices).
Isa cpu_isa();

// Switches the kernels to `isa` (tests run both paths); throws if the CPU does not support it.
void set_cpu_isa(Isa isa);

const char* isa_name(Isa isa);

// Whether the MXFP4 one-token dot products use AVX-512 VNNI (mxfp4_vnni.h): when the kernels run AVX-512
// (cpu_isa() >= avx512) and the CPU has VNNI, unless switched off (tests run both; GPTOSS_CPU_VNNI=0 at
// start-up switches it off too).
bool vnni_enabled();
void set_vnni_enabled(bool on);  // on: only where the CPU has it

}  // namespace gptoss::cpu
