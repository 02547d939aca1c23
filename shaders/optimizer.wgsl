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
    // Members (`update_members`): how many, and each member's quads (its
    // parameters' stride, a multiple of GROUP quads, so that a workgroup
    // updates one member); 0 for a lone run.
    members: u32,
    member_quads: u32,
    _pad0: u32,
    _pad1: u32,
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
// Members: each member's step (`MEMBER_STEP_VEC4S`): whether it updates,
// its t, learning rate and the numbers of its optimizer.
@group(0) @binding(8) var<storage, read> member_steps: array<vec4<u32>>;

const GROUP: u32 = 256u;

@compute @workgroup_size(GROUP)
fn update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    update_quad(flat_index(wid, groups, lid, GROUP), 1.0, rule, step);
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
    update_quad(flat_index(wid, groups, lid, GROUP), min(rule.clip_norm / (norm + 1e-6), 1.0), rule, step);
}

// Every member's update at once: quad i is member i / member_quads's, with
// that member's rule and step (its learning rate, t, bias corrections,
// optimizer numbers) in place of the run's; a member that does not update
// at this step (stopped, or its epoch over) is left as it is.
@compute @workgroup_size(GROUP)
fn update_members(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, groups, lid, GROUP);
    update_member_quad(i, min(i / rule.member_quads, rule.members - 1u), 1.0);
}

// The same, clipping each member by its gradient's norm: its
// `clip_partials` partial sums of g² sit at member · clip_partials in
// `clip`, and a workgroup's quads are one member's (member_quads is a
// multiple of GROUP), so its threads sum them by `update_clipped`'s tree.
@compute @workgroup_size(GROUP)
fn update_members_clipped(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, groups, lid, GROUP);
    let member = min((i - lid) / rule.member_quads, rule.members - 1u);
    var sum = 0.0;
    for (var k = lid; k < rule.clip_partials; k += GROUP) {
        sum += clip[member * rule.clip_partials + k];
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
    update_member_quad(i, member, min(rule.clip_norm / (norm + 1e-6), 1.0));
}

// Quad i of `member` by its own rule and step, when it updates at this step.
fn update_member_quad(i: u32, member: u32, norm_scale: f32) {
    let at = (step.slot * rule.members + member) * MEMBER_STEP_VEC4S;
    let own = member_steps[at];
    if own.y == 0u || i >= rule.n / 4u {
        return;
    }
    let scalars = bitcast<vec4<f32>>(member_steps[at + 2u]);
    let numbers = bitcast<vec4<f32>>(member_steps[at + 3u]);
    let more = bitcast<vec4<f32>>(member_steps[at + 4u]);
    var r = rule;
    r.momentum = numbers.x;
    r.dampening = numbers.y;
    r.beta1 = numbers.z;
    r.beta2 = numbers.w;
    r.alpha = more.x;
    r.eps = more.y;
    r.weight_decay = more.z;
    r.clip_value = bitcast<f32>(member_steps[at + 5u].x);
    var s = step;
    s.t = own.z;
    s.lr = bitcast<f32>(member_steps[at + 1u].w);
    s.step_size = scalars.x;
    s.bias_correction2_sqrt = scalars.y;
    s.adagrad_lr = scalars.z;
    s.decay = scalars.w;
    update_quad(i, norm_scale, r, s);
}

// Updates parameter quad i by rule `rule` and step `step` (the run's, or
// a member's), its gradient scaled by `norm_scale` first (clipping by
// norm).
fn update_quad(i: u32, norm_scale: f32, r: OptimizerUniform, s: StepUniform) {
    let n = r.n / 4u;
    if i >= n {
        return;
    }
    var theta = params[i];
    var g = grads[i];
    // Clipping (`clip_gradients` in src/cpu/optimizer.rs): by global norm,
    // then by value.
    if r.clip_norm > 0.0 {
        g *= norm_scale;
    }
    if r.clip_value > 0.0 {
        g = clamp(g, vec4<f32>(-r.clip_value), vec4<f32>(r.clip_value));
    }
    let lr = s.lr;
    let wd = r.weight_decay;
    // The state's slots, as `Optimizer::state_names` lists them for each
    // optimizer: slot k of parameter quad i is statek[i].
    switch r.kind {
        case OPTIMIZER_SGD: {
            g += wd * theta;
            if r.momentum != 0.0 {
                var momentum_buffer = g;
                if s.t > 1u {
                    momentum_buffer = r.momentum * state0[i] + (1.0 - r.dampening) * g;
                }
                state0[i] = momentum_buffer;
                g = select(momentum_buffer, g + r.momentum * momentum_buffer, vec4<bool>(r.nesterov != 0u));
            }
            theta -= lr * g;
        }
        case OPTIMIZER_ADAM: {
            if r.decoupled != 0u {
                theta *= s.decay;
            } else {
                g += wd * theta;
            }
            let exp_avg = r.beta1 * state0[i] + (1.0 - r.beta1) * g;
            let exp_avg_sq = r.beta2 * state1[i] + (1.0 - r.beta2) * g * g;
            state0[i] = exp_avg;
            state1[i] = exp_avg_sq;
            var second_moment = exp_avg_sq;
            if r.amsgrad != 0u {
                let max_exp_avg_sq = max(state2[i], exp_avg_sq);
                state2[i] = max_exp_avg_sq;
                second_moment = max_exp_avg_sq;
            }
            let denom = sqrt(second_moment) / s.bias_correction2_sqrt + r.eps;
            theta -= s.step_size * (exp_avg / denom);
        }
        // RMSprop: the slots are square_avg, then
        // momentum_buffer when there is momentum, then grad_avg when
        // centered.
        case OPTIMIZER_RMSPROP: {
            g += wd * theta;
            let with_momentum = r.momentum > 0.0;
            let square_avg = r.alpha * state0[i] + (1.0 - r.alpha) * g * g;
            state0[i] = square_avg;
            var avg: vec4<f32>;
            if r.centered != 0u {
                // grad_avg is slot 2 after a momentum_buffer, else slot 1.
                var grad_avg: vec4<f32>;
                if with_momentum {
                    grad_avg = r.alpha * state2[i] + (1.0 - r.alpha) * g;
                    state2[i] = grad_avg;
                } else {
                    grad_avg = r.alpha * state1[i] + (1.0 - r.alpha) * g;
                    state1[i] = grad_avg;
                }
                avg = sqrt(square_avg - grad_avg * grad_avg) + r.eps;
            } else {
                avg = sqrt(square_avg) + r.eps;
            }
            if with_momentum {
                let momentum_buffer = r.momentum * state1[i] + g / avg;
                state1[i] = momentum_buffer;
                theta -= lr * momentum_buffer;
            } else {
                theta -= lr * g / avg;
            }
        }
        // Adagrad: the decayed learning rate comes in `s.adagrad_lr`.
        default: { // OPTIMIZER_ADAGRAD
            g += wd * theta;
            let sum = state0[i] + g * g;
            state0[i] = sum;
            theta -= s.adagrad_lr * g / (sqrt(sum) + r.eps);
        }
    }
    params[i] = theta;
}
