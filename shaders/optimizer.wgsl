// One update kernel for every optimizer over the flat parameter buffer: the
// WGSL twin of `update` in src/cpu/optimizer.rs, element for element, with
// torch's names for the state (`exp_avg`, `exp_avg_sq`, ...).
// State is slot-major: state[slot · n + i]. Each invocation updates four
// consecutive parameters as one vec4 (n is a multiple of four; the host pads
// it): on lavapipe a storage-buffer access costs a per-lane loop, so fewer,
// wider accesses cost less per value. The scalar factors torch
// computes in double precision (bias corrections, Adagrad's decayed lr,
// AdamW's decay factor) arrive precomputed in `step`.

// The twin of `OptimizerUniform` in src/gpu/uniforms.rs: each field for
// the optimizers named beside it, 0 for the others.
struct OptimizerUniform {
    n: u32,            // parameters, a multiple of 4
    kind: u32,         // OPTIMIZER_SGD, _ADAM (Adam and AdamW), _RMSPROP, _ADAGRAD
    nesterov: u32,     // SGD
    amsgrad: u32,      // Adam and AdamW
    decoupled: u32,    // AdamW
    centered: u32,     // RMSprop
    momentum: f32,     // SGD and RMSprop (0: none)
    dampening: f32,    // SGD
    beta1: f32,        // Adam and AdamW
    beta2: f32,
    alpha: f32,        // RMSprop
    eps: f32,
    weight_decay: f32,
    clip_norm: f32,    // max global norm, 0 when off
    clip_value: f32,   // max |g|, 0 when off
}

@group(0) @binding(0) var<uniform> rule: OptimizerUniform;
@group(0) @binding(1) var<uniform> step: StepUniform;
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
    // Clipping (`clip_gradients` in src/cpu/optimizer.rs): by global norm,
    // then by value.
    if rule.clip_norm > 0.0 {
        g *= min(rule.clip_norm / (clip[0] + 1e-6), 1.0);
    }
    if rule.clip_value > 0.0 {
        g = clamp(g, vec4<f32>(-rule.clip_value), vec4<f32>(rule.clip_value));
    }
    let lr = step.lr;
    let wd = rule.weight_decay;
    // The state's slots, as `Optimizer::state_names` lists them for each
    // optimizer: slot k of parameter quad i is state[k · n + i], written out
    // at each access (with the three indices hoisted into variables here,
    // lavapipe 22.3 leaked about 240 KiB of host memory a dispatch).
    switch rule.kind {
        case OPTIMIZER_SGD: {
            g += wd * theta;
            if rule.momentum != 0.0 {
                var momentum_buffer = g;
                if step.t > 1u {
                    momentum_buffer = rule.momentum * state[i] + (1.0 - rule.dampening) * g;
                }
                state[i] = momentum_buffer;
                g = select(momentum_buffer, g + rule.momentum * momentum_buffer, vec4<bool>(rule.nesterov != 0u));
            }
            theta -= lr * g;
        }
        case OPTIMIZER_ADAM: {
            if rule.decoupled != 0u {
                theta *= step.decay;
            } else {
                g += wd * theta;
            }
            let exp_avg = rule.beta1 * state[i] + (1.0 - rule.beta1) * g;
            let exp_avg_sq = rule.beta2 * state[n + i] + (1.0 - rule.beta2) * g * g;
            state[i] = exp_avg;
            state[n + i] = exp_avg_sq;
            var second_moment = exp_avg_sq;
            if rule.amsgrad != 0u {
                let max_exp_avg_sq = max(state[2u * n + i], exp_avg_sq);
                state[2u * n + i] = max_exp_avg_sq;
                second_moment = max_exp_avg_sq;
            }
            let denom = sqrt(second_moment) / step.bias_correction2_sqrt + rule.eps;
            theta -= step.step_size * (exp_avg / denom);
        }
        // RMSprop: the slots are square_avg, then
        // momentum_buffer when there is momentum, then grad_avg when
        // centered.
        case OPTIMIZER_RMSPROP: {
            g += wd * theta;
            let with_momentum = rule.momentum > 0.0;
            let momentum_slot = n + i;
            let grad_avg_slot = select(1u, 2u, with_momentum) * n + i;
            let square_avg = rule.alpha * state[i] + (1.0 - rule.alpha) * g * g;
            state[i] = square_avg;
            var avg: vec4<f32>;
            if rule.centered != 0u {
                let grad_avg = rule.alpha * state[grad_avg_slot] + (1.0 - rule.alpha) * g;
                state[grad_avg_slot] = grad_avg;
                avg = sqrt(square_avg - grad_avg * grad_avg) + rule.eps;
            } else {
                avg = sqrt(square_avg) + rule.eps;
            }
            if with_momentum {
                let momentum_buffer = rule.momentum * state[momentum_slot] + g / avg;
                state[momentum_slot] = momentum_buffer;
                theta -= lr * momentum_buffer;
            } else {
                theta -= lr * g / avg;
            }
        }
        // Adagrad: the decayed learning rate comes in `step.adagrad_lr`.
        default: { // OPTIMIZER_ADAGRAD
            g += wd * theta;
            let sum = state[i] + g * g;
            state[i] = sum;
            theta -= step.adagrad_lr * g / (sqrt(sum) + rule.eps);
        }
    }
    params[i] = theta;
}
