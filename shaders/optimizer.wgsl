// One update kernel for every optimizer over the flat parameter buffer: the
// WGSL twin of `UpdateRule::apply` in src/optim.rs, element for element.
// State is slot-major: state[slot · n + i]. Each invocation updates four
// consecutive parameters as one vec4 (n is a multiple of four; the host pads
// it): on lavapipe a storage-buffer access costs a per-lane loop, so fewer,
// wider accesses cost less per value. The scalar factors torch
// computes in double precision (bias corrections, Adagrad's decayed lr,
// AdamW's decay factor) arrive precomputed in `step`.

// Mirrors `OptimizerShape` in src/gpu/kernels.rs.
struct Rule {
    n: u32,          // parameters, a multiple of 4
    kind: u32,       // 0 sgd, 1 adam/adamw, 2 rmsprop, 3 adagrad
    flag: u32,       // nesterov, amsgrad, centered
    decoupled: u32,  // AdamW
    a: f32,          // sgd momentum, adam β₁, rmsprop α
    b: f32,          // sgd dampening, adam β₂
    eps: f32,
    weight_decay: f32,
    momentum: f32,   // rmsprop momentum
    clip_norm: f32,  // max global norm, 0 when off
    clip_value: f32, // max |g|, 0 when off
}

@group(0) @binding(0) var<uniform> rule: Rule;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read_write> params: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> grads: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> state: array<vec4<f32>>;
// clip[0]: the gradient's global L2 norm, from norm_finish in reduce.wgsl.
@group(0) @binding(5) var<storage, read> clip: array<f32>;

const GROUP: u32 = 256u;

@compute @workgroup_size(GROUP)
fn update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, groups, lid, GROUP);
    let n = rule.n / 4u;
    if i >= n {
        return;
    }
    var theta = params[i];
    var g = grads[i];
    // Clipping (GradClip in src/optim.rs): by global norm, then by value.
    if rule.clip_norm > 0.0 {
        g *= min(rule.clip_norm / (clip[0] + 1e-6), 1.0);
    }
    if rule.clip_value > 0.0 {
        g = clamp(g, vec4<f32>(-rule.clip_value), vec4<f32>(rule.clip_value));
    }
    let lr = step.lr;
    let wd = rule.weight_decay;
    switch rule.kind {
        case 0u: {
            g += wd * theta;
            if rule.a != 0.0 {
                var buf = g;
                if step.t > 1u {
                    buf = rule.a * state[i] + (1.0 - rule.b) * g;
                }
                state[i] = buf;
                g = select(buf, g + rule.a * buf, vec4<bool>(rule.flag != 0u));
            }
            theta -= lr * g;
        }
        case 1u: {
            if rule.decoupled != 0u {
                theta *= step.decay;
            } else {
                g += wd * theta;
            }
            let m = rule.a * state[i] + (1.0 - rule.a) * g;
            let v = rule.b * state[n + i] + (1.0 - rule.b) * g * g;
            state[i] = m;
            state[n + i] = v;
            var v_used = v;
            if rule.flag != 0u {
                v_used = max(state[2u * n + i], v);
                state[2u * n + i] = v_used;
            }
            let denom = sqrt(v_used) / step.bias_correction2_sqrt + rule.eps;
            theta -= step.step_size * (m / denom);
        }
        case 2u: {
            g += wd * theta;
            let alpha = rule.a;
            let sq = alpha * state[i] + (1.0 - alpha) * g * g;
            state[i] = sq;
            let with_momentum = rule.momentum > 0.0;
            var avg: vec4<f32>;
            if rule.flag != 0u {
                let c = select(1u, 2u, with_momentum) * n + i;
                let mean_g = alpha * state[c] + (1.0 - alpha) * g;
                state[c] = mean_g;
                avg = sqrt(sq - mean_g * mean_g) + rule.eps;
            } else {
                avg = sqrt(sq) + rule.eps;
            }
            if with_momentum {
                let buf = rule.momentum * state[n + i] + g / avg;
                state[n + i] = buf;
                theta -= lr * buf;
            } else {
                theta -= lr * g / avg;
            }
        }
        default: {
            g += wd * theta;
            let sum = state[i] + g * g;
            state[i] = sum;
            theta -= step.adagrad_lr * g / (sqrt(sum) + rule.eps);
        }
    }
    params[i] = theta;
}
