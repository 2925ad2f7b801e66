#include "backend/cpu/isa.h"

#include <atomic>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace gptoss::cpu {

namespace {

Isa detect() {
  Isa best = isa_supported(Isa::avx512) ? Isa::avx512 : Isa::avx2;
  const char* env = std::getenv("GPTOSS_CPU_ISA");
  if (!env || !*env) return best;
  const std::string v = env;
  if (v != "avx2" && v != "avx512")
    fail_input("environment variable GPTOSS_CPU_ISA={}: expected avx2 or avx512 (or unset it to pick the best)", v);
  const Isa want = v == "avx2" ? Isa::avx2 : Isa::avx512;
  if (!isa_supported(want))
    fail_input("environment variable GPTOSS_CPU_ISA={}: this CPU does not support it (use avx2 or unset it)", v);
  return want;
}

std::atomic<Isa>& current() {
  static std::atomic<Isa> isa{detect()};
  return isa;
}

}  // namespace

bool isa_supported(Isa isa) {
  if (isa == Isa::avx2) return true;  // the build's baseline
  // GCC's checks read CPUID and, for AVX-512, whether the OS enabled the zmm/opmask state (XCR0).
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
}

Isa cpu_isa() { return current().load(std::memory_order_relaxed); }

void set_cpu_isa(Isa isa) {
  GPTOSS_CHECK(isa_supported(isa), "this CPU does not support {}", isa_name(isa));
  current().store(isa, std::memory_order_relaxed);
}

const char* isa_name(Isa isa) { return isa == Isa::avx512 ? "AVX-512" : "AVX2"; }

}  // namespace gptoss::cpu
