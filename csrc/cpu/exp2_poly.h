// The coefficients of 2^f on [0, 1) that every vector exp2 of the float32
// tiles evaluates, f = x - floor(x), highest degree first for Horner's rule:
// degree 5, fitted for the least largest relative error with the constant term
// exactly 1 (so 2^0 is exactly 1): 8e-8 before rounding, 1.4e-7 (about 2 ulp)
// after float32 Horner. On [0, 1) rather than [-0.5, 0.5] (as accurate: the
// same width) because AVX-512's vscalefps applies 2^floor(x) to x itself, so
// the integer part is never subtracted out.
// The degree 7 Taylor series this replaced was no more accurate once rounded,
// and took two more FMAs per 16 exponentials, on the ports the products need.
// One table, so every float32 path rounds alike.
#pragma once

namespace sacolor::cpu {

constexpr float kExp2Poly[] = {
    0.0018671323778107762f, 0.009017025120556355f, 0.05579991638660431f,
    0.24016444385051727f,   0.6931512951850891f,   1.0f,
};

}  // namespace sacolor::cpu
