//! The optimizer step on the CPU: the readable twin of `update` in
//! `shaders/optimizer.wgsl`, with the same names for the same state
//! (torch's: `momentum_buffer`, `exp_avg`, `exp_avg_sq`, `max_exp_avg_sq`,
//! `square_avg`, `grad_avg`, `sum`), and gradient clipping, the twin of
//! `sum_squares` in `shaders/reduce.wgsl` and `update_clipped` in
//! `shaders/optimizer.wgsl`.
//!
//! State is slot-major (`state[slot · n + i]`), slots in the order of
//! [`Optimizer::state_names`].
//!
//! ```
//! use retroprop::cpu::optimizer_step;
//! use retroprop::{Optimizer, Sgd};
//! let sgd: Optimizer = Sgd::default().lr(0.1).momentum(0.9).into();
//! let (mut theta, mut state) = (vec![1.0f64], vec![0.0; sgd.state_slots()]);
//! optimizer_step(&sgd, &mut theta, &[0.5], &mut state, 1, sgd.lr());
//! assert_eq!(theta, [1.0 - 0.1 * 0.5]);
//! assert_eq!(state, [0.5]); // momentum_buffer = g at t = 1
//! ```

use crate::optim::{GradClip, Optimizer, RuleKind, UpdateRule};
use crate::real::Real;

/// The kinds as the `KIND` of [`update`] (the codes of [`RuleKind`]).
const SGD: u8 = RuleKind::Sgd as u8;
const ADAM: u8 = RuleKind::Adam as u8;
const RMSPROP: u8 = RuleKind::RmsProp as u8;
const ADAGRAD: u8 = RuleKind::Adagrad as u8;

/// Whether an update of `n` parameters is shared among threads.
pub(super) fn splits(n: usize) -> bool {
    n >= 1 << 16
}

/// One step t (1-based) of `optimizer` over every parameter at learning
/// rate `lr`: `state` holds `optimizer.state_slots()` slots of
/// `params.len()` values each.
///
/// # Panics
/// If `grads` or `state` do not match `params` in length.
pub fn optimizer_step<T: Real>(
    optimizer: &Optimizer,
    params: &mut [T],
    grads: &[T],
    state: &mut [T],
    t: u64,
    lr: f64,
) {
    let n = params.len();
    assert_eq!(grads.len(), n, "gradients for {n} parameters");
    assert_eq!(
        state.len(),
        optimizer.state_slots() * n,
        "optimizer state for {n} parameters"
    );
    let rule = UpdateRule {
        lr,
        ..optimizer.rule()
    };
    let k = Coefficients::new(&rule, t);
    let used = optimizer.state_slots();
    // Elementwise and independent: large vectors are split into contiguous
    // ranges (of every slot) on rayon's pool, the one the GEMM uses, so the
    // two never compete for cores.
    let chunk = if splits(n) {
        n.div_ceil(rayon::current_num_threads().max(1))
    } else {
        n.max(1)
    };
    let mut slot_chunks: Vec<std::slice::ChunksMut<'_, T>> = state
        .chunks_exact_mut(n.max(1))
        .take(used)
        .map(|s| s.chunks_mut(chunk))
        .collect();
    let mut jobs = Vec::new();
    for (p, g) in params.chunks_mut(chunk).zip(grads.chunks(chunk)) {
        let slots: Vec<&mut [T]> = slot_chunks
            .iter_mut()
            .map(|c| c.next().expect("same length"))
            .collect();
        jobs.push((p, g, slots));
    }
    super::share::share(jobs, |(p, g, slots)| update_range(&rule, &k, p, g, slots));
}

/// Clips `grads` in place as `clip` says: by global norm, then by value.
pub fn clip_gradients<T: Real>(clip: &GradClip, grads: &mut [T]) {
    if let Some(max_norm) = clip.max_norm {
        let total = grads
            .iter()
            .map(|&g| g * g)
            .fold(T::zero(), |a, b| a + b)
            .sqrt();
        let coef = (T::of(max_norm) / (total + T::of(1e-6))).min(T::one());
        grads.iter_mut().for_each(|g| *g = *g * coef);
    }
    if let Some(max_value) = clip.max_value {
        let (lo, hi) = (T::of(-max_value), T::of(max_value));
        grads.iter_mut().for_each(|g| *g = g.max(lo).min(hi));
    }
}

/// Applies the rule to one contiguous range of parameters and their slots,
/// with the optimizer and its switches fixed at compile time inside the
/// loop: with them read at run time the loop stayed scalar and took four
/// times as long.
fn update_range<T: Real>(
    rule: &UpdateRule,
    k: &Coefficients<T>,
    params: &mut [T],
    grads: &[T],
    slots: Vec<&mut [T]>,
) {
    let (p, g, s) = (params, grads, slots);
    let momentum = match rule.kind {
        RuleKind::Sgd => rule.momentum != 0.0,
        _ => rule.momentum > 0.0,
    };
    use RuleKind::{Adagrad, Adam, RmsProp, Sgd};
    // The one switch each kind has, as the loop's `FLAG`.
    let flag = match rule.kind {
        Sgd => rule.nesterov,
        Adam => rule.amsgrad,
        RmsProp => rule.centered,
        Adagrad => false,
    };
    let update = match (rule.kind, flag, rule.decoupled || momentum) {
        (Sgd, false, false) => update_kind::<T, SGD, false, false>,
        (Sgd, false, true) => update_kind::<T, SGD, false, true>,
        (Sgd, true, _) => update_kind::<T, SGD, true, true>,
        (Adam, false, false) => update_kind::<T, ADAM, false, false>,
        (Adam, false, true) => update_kind::<T, ADAM, false, true>,
        (Adam, true, false) => update_kind::<T, ADAM, true, false>,
        (Adam, true, true) => update_kind::<T, ADAM, true, true>,
        (RmsProp, false, false) => update_kind::<T, RMSPROP, false, false>,
        (RmsProp, false, true) => update_kind::<T, RMSPROP, false, true>,
        (RmsProp, true, false) => update_kind::<T, RMSPROP, true, false>,
        (RmsProp, true, true) => update_kind::<T, RMSPROP, true, true>,
        (Adagrad, ..) => update_kind::<T, ADAGRAD, false, false>,
    };
    update(k, p, g, s);
}

/// [`update_loop`] compiled for each SIMD level (x86-64: AVX-512, AVX2
/// with FMA, baseline SSE2) and run at the best this machine has: built for
/// baseline x86-64 the loop ran four lanes wide and took 10 % of a
/// scikit-learn-sized step. Elementwise, and Rust never fuses a multiply
/// and an add on its own, so every width gives the same bits.
fn update_kind<T: Real, const KIND: u8, const FLAG: bool, const EXTRA: bool>(
    k: &Coefficients<T>,
    params: &mut [T],
    grads: &[T],
    slots: Vec<&mut [T]>,
) {
    pulp::Arch::new().dispatch(
        #[inline(always)]
        || update_loop::<T, KIND, FLAG, EXTRA>(k, params, grads, slots),
    );
}

/// The loop over parameters for one kind: moves each parameter's slots into
/// a `[T; 3]`, applies [`update`], and moves them back.
#[inline(always)]
fn update_loop<T: Real, const KIND: u8, const FLAG: bool, const EXTRA: bool>(
    k: &Coefficients<T>,
    params: &mut [T],
    grads: &[T],
    mut slots: Vec<&mut [T]>,
) {
    let mut s = [T::zero(); 3];
    match slots.len() {
        0 => {
            for (p, &g) in params.iter_mut().zip(grads) {
                *p = update::<T, KIND, FLAG, EXTRA>(k, *p, g, &mut s);
            }
        }
        1 => {
            for ((p, &g), s0) in params.iter_mut().zip(grads).zip(slots[0].iter_mut()) {
                s[0] = *s0;
                *p = update::<T, KIND, FLAG, EXTRA>(k, *p, g, &mut s);
                *s0 = s[0];
            }
        }
        2 => {
            let (first, second) = slots.split_at_mut(1);
            let it = params
                .iter_mut()
                .zip(grads)
                .zip(first[0].iter_mut())
                .zip(second[0].iter_mut());
            for (((p, &g), s0), s1) in it {
                s[0] = *s0;
                s[1] = *s1;
                *p = update::<T, KIND, FLAG, EXTRA>(k, *p, g, &mut s);
                *s0 = s[0];
                *s1 = s[1];
            }
        }
        _ => {
            let (first, rest) = slots.split_at_mut(1);
            let (second, third) = rest.split_at_mut(1);
            let it = params
                .iter_mut()
                .zip(grads)
                .zip(first[0].iter_mut())
                .zip(second[0].iter_mut())
                .zip(third[0].iter_mut());
            for ((((p, &g), s0), s1), s2) in it {
                s = [*s0, *s1, *s2];
                *p = update::<T, KIND, FLAG, EXTRA>(k, *p, g, &mut s);
                [*s0, *s1, *s2] = s;
            }
        }
    }
}

/// Every number one step's update uses, converted to the working precision
/// once per step rather than once per parameter. The scalars torch computes
/// in double precision come from [`UpdateRule::scalars`], as the GPU's do.
struct Coefficients<T> {
    first_step: bool,
    lr: T,
    momentum: T,
    dampening: T,
    beta1: T,
    beta2: T,
    alpha: T,
    eps: T,
    weight_decay: T,
    step_size: T,
    bias_correction2_sqrt: T,
    adagrad_lr: T,
    decay: T,
}

impl<T: Real> Coefficients<T> {
    fn new(rule: &UpdateRule, t: u64) -> Self {
        let s = rule.scalars(t);
        Coefficients {
            first_step: t == 1,
            lr: T::of(s.lr),
            momentum: T::of(rule.momentum),
            dampening: T::of(rule.dampening),
            beta1: T::of(rule.beta1),
            beta2: T::of(rule.beta2),
            alpha: T::of(rule.alpha),
            eps: T::of(rule.eps),
            weight_decay: T::of(rule.weight_decay),
            step_size: T::of(s.step_size),
            bias_correction2_sqrt: T::of(s.bias_correction2_sqrt),
            adagrad_lr: T::of(s.adagrad_lr),
            decay: T::of(s.decay),
        }
    }
}

/// The update of one parameter θ with gradient g; `state` holds its slots
/// and `k` the step's coefficients. `FLAG` is the kind's switch (SGD's
/// `nesterov`, Adam's `amsgrad`, RMSprop's `centered`); `EXTRA` is `decoupled` for Adam, and whether there
/// is momentum for SGD and RMSprop. The WGSL twin is `update` in
/// `shaders/optimizer.wgsl`, case for case.
#[inline(always)]
fn update<T: Real, const KIND: u8, const FLAG: bool, const EXTRA: bool>(
    k: &Coefficients<T>,
    theta: T,
    g: T,
    state: &mut [T; 3],
) -> T {
    let one = T::one();
    match KIND {
        // SGD: FLAG = nesterov, EXTRA = momentum ≠ 0.
        SGD => {
            let [momentum_buffer, _, _] = state;
            let mut g = g + k.weight_decay * theta;
            if EXTRA {
                *momentum_buffer = if k.first_step {
                    g
                } else {
                    k.momentum * *momentum_buffer + (one - k.dampening) * g
                };
                g = if FLAG {
                    g + k.momentum * *momentum_buffer
                } else {
                    *momentum_buffer
                };
            }
            theta - k.lr * g
        }
        // Adam and AdamW: FLAG = amsgrad, EXTRA = decoupled.
        ADAM => {
            let [exp_avg, exp_avg_sq, max_exp_avg_sq] = state;
            let (theta, g) = if EXTRA {
                (theta * k.decay, g)
            } else {
                (theta, g + k.weight_decay * theta)
            };
            *exp_avg = k.beta1 * *exp_avg + (one - k.beta1) * g;
            *exp_avg_sq = k.beta2 * *exp_avg_sq + (one - k.beta2) * g * g;
            let second_moment = if FLAG {
                *max_exp_avg_sq = max_exp_avg_sq.max(*exp_avg_sq);
                *max_exp_avg_sq
            } else {
                *exp_avg_sq
            };
            let denom = second_moment.sqrt() / k.bias_correction2_sqrt + k.eps;
            theta - k.step_size * (*exp_avg / denom)
        }
        // RMSprop: FLAG = centered, EXTRA = momentum > 0. The slots
        // are square_avg, then momentum_buffer when there is momentum, then
        // grad_avg when centered.
        RMSPROP => {
            let [square_avg, second, third] = state;
            let (momentum_buffer, grad_avg) = if EXTRA {
                (second, third)
            } else {
                (third, second)
            };
            let g = g + k.weight_decay * theta;
            *square_avg = k.alpha * *square_avg + (one - k.alpha) * g * g;
            let avg = if FLAG {
                *grad_avg = k.alpha * *grad_avg + (one - k.alpha) * g;
                (*square_avg - *grad_avg * *grad_avg).sqrt() + k.eps
            } else {
                square_avg.sqrt() + k.eps
            };
            if EXTRA {
                *momentum_buffer = k.momentum * *momentum_buffer + g / avg;
                theta - k.lr * *momentum_buffer
            } else {
                theta - k.lr * g / avg
            }
        }
        // Adagrad: the decayed learning rate comes in `adagrad_lr`.
        ADAGRAD => {
            let [sum, _, _] = state;
            let g = g + k.weight_decay * theta;
            *sum = *sum + g * g;
            theta - k.adagrad_lr * g / (sum.sqrt() + k.eps)
        }
        _ => unreachable!("no optimizer kind {KIND}"),
    }
}
