// Which instruction sets this CPU and its operating system can run, and which
// one the kernels use (SACOLOR_CPU_ISA forces one).
//
// Free of torch headers, like tiles.h: isa.cpp is compiled for the baseline
// ISA and only reads cpuid and XCR0.
#pragma once

#include <string>

namespace sacolor::cpu {

// Kernel paths from the most portable up; each needs what the one below it needs.
enum class Isa {
  generic,     // portable C++ (the only float64 path)
  avx2,        // AVX2 + FMA, float32 tiles
  avx512,      // AVX-512F, float32 tiles
  avx512bf16,  // AVX-512F tiles for float32, vdpbf16ps dot products for bfloat16 inputs
  amx,         // AVX-512F tiles for float32, AMX tile products for bfloat16 inputs
};

constexpr Isa kAllIsas[] = {Isa::generic, Isa::avx2, Isa::avx512, Isa::avx512bf16, Isa::amx};

const char* isa_name(Isa isa);

// The CPU flag (as /proc/cpuinfo spells it) or OS state that stops this machine
// running `isa`, e.g. "avx512_bf16"; empty when it can run it.
std::string isa_missing(Isa isa);

// The path the kernels take on this call: SACOLOR_CPU_ISA if set (read on every
// call, so a test can switch paths in one process), else the best this CPU
// runs. Throws std::invalid_argument naming the variable for an unknown value
// or a path this CPU cannot run.
Isa selected_isa();

}  // namespace sacolor::cpu
