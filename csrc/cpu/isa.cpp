// Run-time detection of the instruction sets the kernels may use: cpuid for
// what the CPU implements, XGETBV for what the operating system saves on a
// context switch (an AVX-512 instruction faults, or its registers get
// corrupted, where the OS does not enable the opmask and zmm state), as
// PyTorch's cpuinfo does; for AMX also the process's permission to use the
// tile data state, which Linux grants on request (arch_prctl). Compiled for
// the baseline ISA: it must run anywhere.

#include "isa.h"

#include <cstdlib>
#include <stdexcept>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif
#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace sacolor::cpu {
namespace {

struct Features {
  bool avx2_fma = false;  // AVX, AVX2, FMA, and the OS saves ymm state
  bool avx512f = false;   // AVX-512 F and DQ (every AVX-512 CPU but Knights Landing), and the
                          // OS saves opmask and zmm state
  bool avx512bw = false;
  bool avx512bf16 = false;
  bool amx_bf16 = false;        // AMX-TILE, AMX-BF16, and the OS saves tile state
  bool amx_permitted = false;  // Linux let this process use the tile data
};

// Linux (5.16 and later) enables the AMX tile data state per process, on
// request; without it the first tile instruction faults.
bool request_amx_permission() {
#if defined(__x86_64__) && defined(__linux__)
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

#if defined(__x86_64__) && defined(__GNUC__)
// XCR0 through the raw instruction: the _xgetbv intrinsic needs -mxsave.
unsigned long long xcr0() {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

Features detect() {
  Features f;
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = ecx & (1u << 27), avx = ecx & (1u << 28), fma = ecx & (1u << 12);
  if (!osxsave || !avx) return f;
  const unsigned long long xcr = xcr0();
  const bool ymm_state = (xcr & 0x6) == 0x6;    // XMM | YMM
  const bool zmm_state = (xcr & 0xe6) == 0xe6;  // XMM | YMM | opmask | ZMM_Hi256 | Hi16_ZMM
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool avx2 = ebx & (1u << 5), avx512f = ebx & (1u << 16), avx512dq = ebx & (1u << 17);
  const bool avx512bw = ebx & (1u << 30);
  const unsigned max_subleaf = eax;
  const bool amx_tile = edx & (1u << 24), amx_bf16 = edx & (1u << 22);
  const bool tile_state = (xcr & 0x60000) == 0x60000;  // XTILECFG | XTILEDATA
  f.avx2_fma = ymm_state && avx2 && fma;
  f.avx512f = f.avx2_fma && zmm_state && avx512f && avx512dq;
  f.avx512bw = f.avx512f && avx512bw;
  if (max_subleaf >= 1) {
    __cpuid_count(7, 1, eax, ebx, ecx, edx);
    f.avx512bf16 = f.avx512bw && (eax & (1u << 5));
  }
  f.amx_bf16 = f.avx512bf16 && amx_tile && amx_bf16 && tile_state;
  f.amx_permitted = f.amx_bf16 && request_amx_permission();
  return f;
}
#else
Features detect() { return {}; }
#endif

const Features& features() {
  static const Features f = detect();
  return f;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::generic: return "generic";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::avx512bf16: return "avx512bf16";
    case Isa::amx: return "amx";
  }
  return "?";
}

std::string isa_missing(Isa isa) {
  const Features& f = features();
  switch (isa) {
    case Isa::generic: return "";
    case Isa::avx2: return f.avx2_fma ? "" : "avx2 and fma (with OS ymm state)";
    case Isa::avx512: return f.avx512f ? "" : "avx512f and avx512dq (with OS opmask and zmm state)";
    case Isa::avx512bf16:
      if (!f.avx512f) return isa_missing(Isa::avx512);
      if (!f.avx512bw) return "avx512bw";
      return f.avx512bf16 ? "" : "avx512_bf16";
    case Isa::amx:
      if (!f.avx512bf16) return isa_missing(Isa::avx512bf16);
      if (!f.amx_bf16) return "amx_tile and amx_bf16 (with OS tile state)";
      return f.amx_permitted ? "" : "permission to use AMX tile data (arch_prctl; Linux 5.16+)";
  }
  return "?";
}

Isa selected_isa() {
  const char* env = std::getenv("SACOLOR_CPU_ISA");
  if (env == nullptr || *env == '\0') {
    Isa best = Isa::generic;
    for (Isa isa : kAllIsas)
      if (isa_missing(isa).empty()) best = isa;
    return best;
  }
  const std::string forced = env;
  std::string names;
  for (Isa isa : kAllIsas) {
    if (forced == isa_name(isa)) {
      const std::string missing = isa_missing(isa);
      if (!missing.empty())
        throw std::invalid_argument("SACOLOR_CPU_ISA=" + forced + ", but this CPU lacks " + missing +
                                    "; unset SACOLOR_CPU_ISA or pick a path it runs");
      return isa;
    }
    names += std::string(names.empty() ? "" : ", ") + isa_name(isa);
  }
  throw std::invalid_argument("SACOLOR_CPU_ISA=" + forced + " is not one of: " + names +
                              " (or unset, for the best this CPU runs)");
}

}  // namespace sacolor::cpu
