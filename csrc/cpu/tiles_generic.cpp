// The tile kernels in portable C++: the fallback on any CPU, and the only
// float64 path (float64 exists for gradcheck, not for speed).

#include "vec_generic.h"

#define SACOLOR_TILES_NAMESPACE generic
#include "tiles_impl.h"

namespace sacolor::cpu {

namespace {
// Key blocks of whole strips (6 keys, the register tile's height at 16
// registers) and whole vectors: 48 and 24.
constexpr KernelTable<float> kGenericF32 =
    generic::make_table<VecGeneric<float, 8>, 64, 48, 64>("generic");
constexpr KernelTable<double> kGenericF64 =
    generic::make_table<VecGeneric<double, 4>, 32, 24, 32>("generic");
}  // namespace

const KernelTable<float>* generic_f32() { return &kGenericF32; }
const KernelTable<double>* generic_f64() { return &kGenericF64; }

}  // namespace sacolor::cpu
