// What every kernel module starts with (after the named codes and before
// shaders/activation.wgsl): the dropout hash, the index of an invocation in a
// 2-D grid, and the per-step uniform.

// Inverted dropout's factor for element (`row` in the batch, `column`) of
// layer `layer` at step `step`: 0, or `scale` when the hash is at least
// `threshold`. Row and column are hashed apart (a flat index wraps past 2³²
// elements). The Rust twin is `Dropout::factor` in src/dropout.rs; the same
// u32 arithmetic gives the same mask.
fn hash32(v: u32) -> u32 {
    var x = v;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

fn dropout_factor(threshold: u32, scale: f32, seed: u32, step: u32, layer: u32, row: u32, column: u32) -> f32 {
    let h = hash32(seed ^ hash32(step ^ hash32(layer ^ hash32(row ^ hash32(column)))));
    return select(0.0, scale, h >= threshold);
}

// A members run's per-step, per-member scalars (`MemberStep` in
// src/gpu/uniforms.rs) are read as this many vec4<u32> (their f32 fields
// by bitcast): [rows, active, t, dropout_threshold], [dropout_scale,
// dropout_seed, inv_norm, lr], [step_size, bias_correction2_sqrt,
// adagrad_lr, decay], [momentum, dampening, beta1, beta2], [alpha, eps,
// weight_decay, clip_norm], [clip_value, 0, 0, 0].
const MEMBER_STEP_VEC4S: u32 = 6u;

// The flat index of this invocation in a 2-D grid of 1-D workgroups of
// `size` threads: dispatches past 65535 workgroups wrap into y.
fn flat_index(wid: vec3<u32>, groups: vec3<u32>, lid: u32, size: u32) -> u32 {
    return (wid.y * groups.x + wid.x) * size + lid;
}

// What changes from one step to the next, written once per epoch beside
// the permutation and read at a dynamic offset (data, reduce, optimizer).
// The twin of `StepUniform` in src/gpu/uniforms.rs.
struct StepUniform {
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
