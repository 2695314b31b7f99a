// The coefficients of 2^f on [-0.5, 0.5] that every vector exp2 of the tiles
// evaluates (degree 7, Taylor: relative error < 1e-8 before rounding), highest
// degree first for Horner's rule: one table, so every float32 path rounds alike.
#pragma once

namespace sacolor::cpu {

constexpr float kExp2Poly[] = {
    1.525273380405984e-05f, 1.5403530393381606e-04f, 1.3333558146428443e-03f,
    9.618129107628477e-03f, 5.550410866482158e-02f,  2.402265069591007e-01f,
    6.931471805599453e-01f, 1.0f,
};

}  // namespace sacolor::cpu
