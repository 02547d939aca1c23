// Activation functions and their derivatives: the WGSL twin of
// src/activation.rs (`Activation::forward` / `Activation::derivative`).
// Codes: 0 identity, 1 sigmoid, 2 tanh, 3 relu, 4 leaky_relu, 5 gelu (erf),
// 6 gelu (tanh approximation).

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

// tanh to within a few ulp everywhere (Cephes' tanhf). Drivers' builtin
// tanh differs: some overflow to NaN for large |z|, lavapipe's loses
// relative accuracy near 0 (1.5e-5 at z = 0.002).
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

fn activate(code: u32, slope: f32, z: f32) -> f32 {
    switch code {
        case 1u: { return sigmoid(z); }
        case 2u: { return tanh_safe(z); }
        case 3u: { return max(z, 0.0); }
        case 4u: { return select(slope * z, z, z > 0.0); }
        case 5u: { return z * normal_cdf(z); }
        // ½ z (1 + tanh u) = z σ(2u): no cancellation for z ≪ 0.
        case 6u: { return z * sigmoid(2.0 * gelu_tanh_inner(z)); }
        default: { return z; }
    }
}

// f'(z): dZ = dA ⊙ f'(Z).
fn activate_grad(code: u32, slope: f32, z: f32) -> f32 {
    switch code {
        case 1u: { return sigmoid(z) * sigmoid(-z); }
        case 2u: { return sech2(z); }
        case 3u: { return select(0.0, 1.0, z > 0.0); }
        case 4u: { return select(slope, 1.0, z > 0.0); }
        case 5u: { return normal_cdf(z) + z * INV_SQRT_2PI * exp(-0.5 * z * z); }
        // σ(2u) + 2 z σ(2u) σ(−2u) u', u' = √(2/π)(1 + 3c z²)
        case 6u: {
            let u2 = 2.0 * gelu_tanh_inner(z);
            let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_C * z * z);
            let s = sigmoid(u2);
            return s + 2.0 * z * s * sigmoid(-u2) * du;
        }
        default: { return 1.0; }
    }
}

// Inverted dropout's factor for element `index` (row in the batch × width
// + column) of layer `layer` at step `step`: 0, or `scale` when the hash is
// at least `threshold`. The Rust twin is `Dropout::factor` in
// src/dropout.rs; the same u32 arithmetic gives the same mask.
fn hash32(v: u32) -> u32 {
    var x = v;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

fn dropout_factor(threshold: u32, scale: f32, seed: u32, step: u32, layer: u32, index: u32) -> f32 {
    let h = hash32(seed ^ hash32(step ^ hash32(layer ^ hash32(index))));
    return select(0.0, scale, h >= threshold);
}

// The flat index of this invocation in a 2-D grid of 1-D workgroups of
// `size` threads: dispatches past 65535 workgroups wrap into y.
fn flat_index(wid: vec3<u32>, groups: vec3<u32>, lid: u32, size: u32) -> u32 {
    return (wid.y * groups.x + wid.x) * size + lid;
}

// What changes from one step to the next, written once per epoch beside
// the permutation and read at a dynamic offset (data, reduce, optimizer).
// Mirrors `StepParams` in src/gpu/kernels.rs.
struct Step {
    batch_start: u32,
    slot: u32,
    t: u32,
    _pad: u32,
    lr: f32,
    step_size: f32,
    bias_correction2_sqrt: f32,
    adagrad_lr: f32,
    decay: f32,
}
