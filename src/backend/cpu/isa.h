// Which vector instruction set the CPU kernels use. The build targets x86-64-v3 (AVX2/FMA) and every
// kernel has that version; a few hot kernels also have an AVX-512 version (F/BW/VL), compiled into the
// same binary with per-function target attributes and chosen here at run time, so one binary runs on
// both kinds of CPU. On top of AVX-512, VNNI (with VBMI's vpermb) runs the MXFP4 one-token dot products
// (mxfp4_vnni.h), and Intel's AMX (tile matrix multiply, bf16) the bf16 matmuls of 2+ tokens (bf16_amx.h).
// GPTOSS_CPU_ISA=avx2, avx512 or vnni forces the lesser kernels (to compare, or to rule them out).
#pragma once

namespace gptoss::cpu {

enum class Isa { avx2, avx512, vnni, amx };  // each includes the ones before it (every AMX CPU has VNNI and VBMI)

// Whether this CPU and OS run `isa` (AVX-512 also needs the OS to save the zmm and mask registers; AMX
// needs the OS to grant this process the tile state, which the first call asks for).
bool isa_supported(Isa isa);

// The instruction set the kernels use now: the best supported one, or GPTOSS_CPU_ISA (avx2 | avx512 | vnni | amx; an
// unknown or unsupported value is an error naming the variable and the choices).
Isa cpu_isa();

// Switches the kernels to `isa` (tests run both paths); throws if the CPU does not support it.
void set_cpu_isa(Isa isa);

const char* isa_name(Isa isa);

}  // namespace gptoss::cpu
