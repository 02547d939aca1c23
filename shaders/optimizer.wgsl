// One update kernel for every optimizer over the flat parameter buffer: the
// WGSL twin of `update` in src/cpu/optimizer.rs, element for element, with
// torch's names for the state (`exp_avg`, `exp_avg_sq`, ...).
// State is slot-major (slot k of parameter i at k · len + i of the flat
// state buffer): each slot is bound on its own, `state0` to `state2`, and
// parameters, gradients and state are bound piece by piece
// (`ParamLayout::pieces` in src/gpu/resources.rs) where they are larger than
// one binding; `n` is the piece's length. Each invocation updates four
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
    clip_partials: u32, // partial sums of g² in `clip` (clipping by norm)
}

@group(0) @binding(0) var<uniform> rule: OptimizerUniform;
@group(0) @binding(1) var<uniform> step: StepUniform;
@group(0) @binding(2) var<storage, read_write> params: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> grads: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> state0: array<vec4<f32>>;
// The partial sums of g² over the whole gradient (`sum_squares` in
// reduce.wgsl, every piece's), whose sum is the squared global L2 norm.
@group(0) @binding(5) var<storage, read> clip: array<f32>;
@group(0) @binding(6) var<storage, read_write> state1: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> state2: array<vec4<f32>>;

const GROUP: u32 = 256u;

@compute @workgroup_size(GROUP)
fn update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    update_quad(flat_index(wid, groups, lid, GROUP), 1.0);
}

var<workgroup> squares: array<f32, GROUP>;

// The same, clipping by the global norm: each workgroup first sums the
// partial sums of g² by a fixed tree (thread lid those at lid, lid + 256,
// ...), the same in every workgroup, so that no dispatch of its own
// finishes the norm.
@compute @workgroup_size(GROUP)
fn update_clipped(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    var sum = 0.0;
    for (var k = lid; k < rule.clip_partials; k += GROUP) {
        sum += clip[k];
    }
    squares[lid] = sum;
    workgroupBarrier();
    for (var half = GROUP / 2u; half > 0u; half /= 2u) {
        if lid < half {
            squares[lid] += squares[lid + half];
        }
        workgroupBarrier();
    }
    let norm = sqrt(squares[0]);
    update_quad(flat_index(wid, groups, lid, GROUP), min(rule.clip_norm / (norm + 1e-6), 1.0));
}

// Updates parameter quad i, its gradient scaled by `norm_scale` first
// (clipping by norm).
fn update_quad(i: u32, norm_scale: f32) {
    let n = rule.n / 4u;
    if i >= n {
        return;
    }
    var theta = params[i];
    var g = grads[i];
    // Clipping (`clip_gradients` in src/cpu/optimizer.rs): by global norm,
    // then by value.
    if rule.clip_norm > 0.0 {
        g *= norm_scale;
    }
    if rule.clip_value > 0.0 {
        g = clamp(g, vec4<f32>(-rule.clip_value), vec4<f32>(rule.clip_value));
    }
    let lr = step.lr;
    let wd = rule.weight_decay;
    // The state's slots, as `Optimizer::state_names` lists them for each
    // optimizer: slot k of parameter quad i is statek[i].
    switch rule.kind {
        case OPTIMIZER_SGD: {
            g += wd * theta;
            if rule.momentum != 0.0 {
                var momentum_buffer = g;
                if step.t > 1u {
                    momentum_buffer = rule.momentum * state0[i] + (1.0 - rule.dampening) * g;
                }
                state0[i] = momentum_buffer;
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
            let exp_avg = rule.beta1 * state0[i] + (1.0 - rule.beta1) * g;
            let exp_avg_sq = rule.beta2 * state1[i] + (1.0 - rule.beta2) * g * g;
            state0[i] = exp_avg;
            state1[i] = exp_avg_sq;
            var second_moment = exp_avg_sq;
            if rule.amsgrad != 0u {
                let max_exp_avg_sq = max(state2[i], exp_avg_sq);
                state2[i] = max_exp_avg_sq;
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
            let square_avg = rule.alpha * state0[i] + (1.0 - rule.alpha) * g * g;
            state0[i] = square_avg;
            var avg: vec4<f32>;
            if rule.centered != 0u {
                // grad_avg is slot 2 after a momentum_buffer, else slot 1.
                var grad_avg: vec4<f32>;
                if with_momentum {
                    grad_avg = rule.alpha * state2[i] + (1.0 - rule.alpha) * g;
                    state2[i] = grad_avg;
                } else {
                    grad_avg = rule.alpha * state1[i] + (1.0 - rule.alpha) * g;
                    state1[i] = grad_avg;
                }
                avg = sqrt(square_avg - grad_avg * grad_avg) + rule.eps;
            } else {
                avg = sqrt(square_avg) + rule.eps;
            }
            if with_momentum {
                let momentum_buffer = rule.momentum * state1[i] + g / avg;
                state1[i] = momentum_buffer;
                theta -= lr * momentum_buffer;
            } else {
                theta -= lr * g / avg;
            }
        }
        // Adagrad: the decayed learning rate comes in `step.adagrad_lr`.
        default: { // OPTIMIZER_ADAGRAD
            g += wd * theta;
            let sum = state0[i] + g * g;
            state0[i] = sum;
            theta -= step.adagrad_lr * g / (sqrt(sum) + rule.eps);
        }
    }
    params[i] = theta;
}
