#include "backend/cpu/isa.h"

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace gptoss::cpu {

namespace {

// The GPTOSS_CPU_ISA value of each set.
const char* isa_id(Isa isa) {
  static const char* const ids[] = {"avx2", "avx512", "vnni", "amx"};
  return ids[int(isa)];
}

Isa detect() {
  Isa best = Isa::amx;
  while (!isa_supported(best)) best = Isa(int(best) - 1);
  const char* env = std::getenv("GPTOSS_CPU_ISA");
  if (!env || !*env) return best;
  const std::string v = env;
  Isa want = Isa::avx2;
  while (want != Isa::amx && v != isa_id(want)) want = Isa(int(want) + 1);
  if (v != isa_id(want))
    fail_input("environment variable GPTOSS_CPU_ISA={}: expected avx2, avx512, vnni or amx (or unset it to pick the best)", v);
  if (!isa_supported(want))
    fail_input("environment variable GPTOSS_CPU_ISA={}: this CPU does not support it (use avx2 or unset it)", v);
  return want;
}

// AMX-BF16, AMX-TILE and AVX512-BF16 in CPUID, the tile state enabled by the OS (XCR0 bits 17-18), and this process
// granted it (Linux: arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA; once asked, the grant holds for every
// thread). GCC 12's __builtin_cpu_supports does not report AMX, hence CPUID by hand.
bool amx_usable() {
  static const bool ok = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !((d >> 22) & 1) || !((d >> 24) & 1)) return false;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !((a >> 5) & 1)) return false;  // AVX512_BF16 (x packing)
    if (!__get_cpuid_count(1, 0, &a, &b, &c, &d) || !((c >> 27) & 1)) return false;  // OSXSAVE: xgetbv works
    unsigned lo = 0, hi = 0;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0x60000u) != 0x60000u) return false;
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ok;
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
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl");
  // The VNNI kernels decode with vpermb (VBMI): every CPU with VNNI but Cascade Lake has it.
  const bool vnni = avx512 && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vbmi");
  return isa == Isa::avx512 ? avx512 : isa == Isa::vnni ? vnni : vnni && amx_usable();
}

Isa cpu_isa() { return current().load(std::memory_order_relaxed); }

void set_cpu_isa(Isa isa) {
  GPTOSS_CHECK(isa_supported(isa), "this CPU does not support {}", isa_name(isa));
  current().store(isa, std::memory_order_relaxed);
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx2: return "AVX2";
    case Isa::avx512: return "AVX-512";
    case Isa::vnni: return "AVX-512 + VNNI";
    case Isa::amx: return "AVX-512 + AMX";
  }
  return "?";
}

}  // namespace gptoss::cpu
