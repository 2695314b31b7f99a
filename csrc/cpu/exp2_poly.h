// The coefficients of 2^f on [-0.5, 0.5] that every vector exp2 of the float32
// tiles evaluates, highest degree first for Horner's rule: degree 5, fitted for
// the least largest relative error with the constant term exactly 1 (so 2^0 is
// exactly 1): 9e-8 before rounding, 2e-7 (about 2 ulp) after float32 Horner.
// The degree 7 Taylor series this replaced was no more accurate once rounded,
// and took two more FMAs per 16 exponentials, on the ports the products need.
// One table, so every float32 path rounds alike.
#pragma once

namespace sacolor::cpu {

constexpr float kExp2Poly[] = {
    0.0013264684239402413f, 0.009671498090028763f, 0.05550733581185341f,
    0.24022242426872253f,   0.6931470036506653f,   1.0f,
};

}  // namespace sacolor::cpu
