// MXFP4 encoding: 32 values share one E8M0 scale 2^(s-127); each value is an FP4 E2M1 code
// (sign | exp(2) | mantissa(1): magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6). Packing as in the hub
// checkpoints: byte k of a 16-byte block holds element 2k in its low nibble, 2k+1 in its high nibble.
//
// Two standard ways to pick the shared scale, and ours:
//  - Ocp:    the OCP MX v1.0 rule, 2^(floor(log2 amax) - 2) (2 = the largest FP4 exponent). Values
//            above 6 x scale (up to 8 x scale) saturate to +-6.
//  - Triton: OpenAI's triton_kernels downcast: amax / 6 rounded UP to a power of two, so nothing
//            saturates (costs resolution when amax / 2^floor(log2 amax) is above 1.5).
//  - Best:   per block, whichever of the two has the lower squared error (ties: Ocp). Never worse
//            than either rule on any block.
// Elements are then rounded to the nearest FP4 value, ties to the even code (RNE), saturating at +-6;
// the sign bit is kept for negative values that round to zero (-0), as the OCP reference does. A block
// of zeros gets scale byte 0 and zero codes. Scale exponents are clamped to E8M0's [-127, 127].
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace gptoss {

enum class Mxfp4Rounding { Ocp, Triton, Best };

// "ocp" | "triton" | "best"; throws InputError naming the choices.
Mxfp4Rounding parse_mxfp4_rounding(std::string_view name);
std::string_view mxfp4_rounding_name(Mxfp4Rounding r);

// FP4 E2M1 code (0..15) of x (already divided by the block scale): nearest value, ties to even, saturating.
uint8_t fp4_encode(float x);

// E8M0 scale byte (2^(byte-127)) that each rule picks for a block with this largest magnitude.
uint8_t mxfp4_scale_ocp(float amax);
uint8_t mxfp4_scale_triton(float amax);

// Quantizes one block of 32 finite floats into 16 packed bytes and a scale byte. Returns the squared
// error sum_i (x_i - dequant_i)^2. `used_triton` (optional) is set when Best chose the Triton scale
// over a different Ocp scale.
double mxfp4_quantize_block(const float* x, Mxfp4Rounding rule, uint8_t* packed, uint8_t* scale,
                            bool* used_triton = nullptr);

// Dequantizes one block: out[i] = fp4(code_i) * 2^(scale-127).
void mxfp4_dequantize_block(const uint8_t* packed, uint8_t scale, float* out);

}  // namespace gptoss
