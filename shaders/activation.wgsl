// Activation functions and their derivatives: the WGSL twin of
// src/activation.rs, `activation_forward` of `Activation::forward` and
// `activation_derivative` of `Activation::derivative`. The codes
// (ACTIVATION_*) are generated from their one definition in Rust
// (`Activation::code`, see src/gpu/codes.rs).

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const GELU_TANH_C: f32 = 0.044715;
const INV_SQRT_2: f32 = 0.7071067811865476;
const INV_SQRT_2PI: f32 = 0.3989422804014327;

fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        return 1.0 / (1.0 + exp(-z));
    }
    let e = exp(z);
    return e / (1.0 + e);
}

// tanh to within a few ulp everywhere (Cephes' tanhf). Differs from the
// CPU on purpose: Rust's `tanh` is the C library's, correctly rounded, but
// drivers' builtin tanh is not: some overflow to NaN for large |z|,
// lavapipe's loses relative accuracy near 0 (1.5e-5 at z = 0.002).
fn tanh_safe(z: f32) -> f32 {
    let x = abs(z);
    if x < 0.625 {
        let s = z * z;
        return z + z * s * ((((-5.70498872745e-3 * s + 2.06390887954e-2) * s - 5.37397155531e-2) * s
            + 1.33314422036e-1) * s - 3.33332819422e-1);
    }
    let t = 1.0 - 2.0 / (exp(2.0 * min(x, 9.0)) + 1.0);
    return select(-t, t, z >= 0.0);
}

// sech²(z) = 1 − tanh²(z) without the cancellation of 1 − t².
fn sech2(z: f32) -> f32 {
    let e = exp(-2.0 * abs(z));
    return 4.0 * e / ((1.0 + e) * (1.0 + e));
}

// erfc with relative error below 1.2e-7 everywhere (Numerical Recipes'
// Chebyshev fit), so that Φ(z) = ½ erfc(−z/√2) stays accurate in the tails.
// Differs from the CPU on purpose: WGSL has no erf or erfc, and the CPU
// uses libm's `erfc`, exact to an ulp; the two agree to f32 precision.
fn erfc_nr(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
        + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
        + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * exp(poly);
    return select(2.0 - r, r, x >= 0.0);
}

// Φ(z), the standard normal CDF.
fn normal_cdf(z: f32) -> f32 {
    return 0.5 * erfc_nr(-z * INV_SQRT_2);
}

// u = √(2/π) (z + 0.044715 z³).
fn gelu_tanh_inner(z: f32) -> f32 {
    return SQRT_2_OVER_PI * (z + GELU_TANH_C * z * z * z);
}

// f(z).
fn activation_forward(code: u32, slope: f32, z: f32) -> f32 {
    switch code {
        case ACTIVATION_SIGMOID: { return sigmoid(z); }
        case ACTIVATION_TANH: { return tanh_safe(z); }
        case ACTIVATION_RELU: { return max(z, 0.0); }
        case ACTIVATION_LEAKY_RELU: { return select(slope * z, z, z > 0.0); }
        case ACTIVATION_GELU: { return z * normal_cdf(z); }
        // ½ z (1 + tanh u) = z σ(2u): no cancellation for z ≪ 0.
        case ACTIVATION_GELU_TANH: { return z * sigmoid(2.0 * gelu_tanh_inner(z)); }
        default: { return z; } // ACTIVATION_IDENTITY
    }
}

// f'(z): dZ = dA ⊙ f'(Z).
fn activation_derivative(code: u32, slope: f32, z: f32) -> f32 {
    switch code {
        case ACTIVATION_SIGMOID: { return sigmoid(z) * sigmoid(-z); }
        case ACTIVATION_TANH: { return sech2(z); }
        case ACTIVATION_RELU: { return select(0.0, 1.0, z > 0.0); }
        case ACTIVATION_LEAKY_RELU: { return select(slope, 1.0, z > 0.0); }
        case ACTIVATION_GELU: { return normal_cdf(z) + z * INV_SQRT_2PI * exp(-0.5 * z * z); }
        // σ(2u) + 2 z σ(2u) σ(−2u) u', u' = √(2/π)(1 + 3c z²)
        case ACTIVATION_GELU_TANH: {
            let u2 = 2.0 * gelu_tanh_inner(z);
            let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_C * z * z);
            let s = sigmoid(u2);
            return s + 2.0 * z * s * sigmoid(-u2) * du;
        }
        default: { return 1.0; } // ACTIVATION_IDENTITY
    }
}
