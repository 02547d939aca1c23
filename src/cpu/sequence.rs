//! The forward and backward passes of a network that is more than dense
//! layers one after another ([`Mlp::kinds`]: normalisations, activations
//! alone, residual skips), step by step. A plain network takes the
//! [`Network`](super::Network)'s own passes instead; the dense steps here
//! are the same `dense_forward` and `dense_backward`, with the same
//! dropout masks.

use super::dense::{dense_backward, dense_forward};
use super::embedding::{EmbeddingSaved, embedding_backward, embedding_forward};
use super::ensemble::{
    Ensemble, EnsembleGradients, EnsembleSaved, ensemble_backward, ensemble_forward,
};
use super::gemm::Gemm;
use super::members_layers::{
    MemberLinear, member_linear_backward, member_linear_forward, scale_backward, scale_forward,
    view_backward,
};
use super::norm::{
    Norm, NormSaved, RunningStats, batch_norm_backward, batch_norm_backward_across,
    batch_norm_forward_eval, batch_norm_forward_train, batch_norm_forward_train_across,
    layer_norm_backward, layer_norm_forward,
};
use crate::backend::BatchSums;
use crate::dropout::Dropout;
use crate::model::{LayerKind, Mlp, NormKind};

/// Dropout during a training pass: each dense layer's, the mask seed,
/// the step, and where the pass's rows sit in the batch.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dropping<'a> {
    pub layers: &'a [Option<Dropout>],
    pub seed: u32,
    pub step: u32,
    pub offset: usize,
    /// Where batch normalisation's statistics become the whole batch's,
    /// when ranks share it.
    pub across: Option<&'a dyn BatchSums>,
}

/// Every step's buffers, kept from the forward pass for the backward.
#[derive(Debug, Clone, Default)]
pub(super) struct Sequence<T> {
    /// Each step's output.
    out: Vec<Vec<T>>,
    /// Each dense step's pre-activation Z.
    z: Vec<Vec<T>>,
    /// Each dense step's dropout factors (empty without dropout).
    masks: Vec<Vec<T>>,
    /// Each normalisation step's x̂ and 1/σ.
    saved: Vec<NormSaved<T>>,
    /// Each BatchEnsemble step's X ⊙ r, product and Z.
    ensembles: Vec<EnsembleSaved<T>>,
    /// The embedding's encoding and pre-activation.
    embedded: EmbeddingSaved<T>,
    /// Gradients waiting at a skip, innermost last.
    skip_grads: Vec<Vec<T>>,
    grad: Vec<T>,
    input_grad: Vec<T>,
}

impl<T: Gemm> Sequence<T> {
    /// The forward pass over `x`; returns the output. A training pass
    /// (`dropping` given) normalises BatchNorm by the batch and moves its
    /// `running` statistics; any other by the running statistics.
    ///
    /// # Panics
    /// A training pass of BatchNorm on one row (the trainer refuses a
    /// batch size of 1 for such a network).
    pub fn forward(
        &mut self,
        mlp: &Mlp,
        params: &[T],
        running: &mut [RunningStats<T>],
        x: &[T],
        dropping: Option<Dropping<'_>>,
    ) -> &[T] {
        let steps = mlp.kinds().len();
        self.out.resize(steps, Vec::new());
        self.z.resize(steps, Vec::new());
        self.masks.resize(steps, Vec::new());
        self.saved.resize(steps, NormSaved::default());
        self.ensembles.resize(steps, EnsembleSaved::default());
        let members = mlp.members();
        let mut skips = Vec::new();
        for (i, &kind) in mlp.kinds().iter().enumerate() {
            let (done, rest) = self.out.split_at_mut(i);
            let input: &[T] = if i == 0 { x } else { &done[i - 1] };
            let out = &mut rest[0];
            match kind {
                LayerKind::Dense(l) => {
                    let layer = mlp.layers()[l];
                    let rows = input.len() / layer.inputs;
                    let z = &mut self.z[i];
                    z.resize(rows * layer.outputs, T::zero());
                    out.resize(rows * layer.outputs, T::zero());
                    let (w, b) = (mlp.weight_range(l), mlp.bias_range(l));
                    dense_forward(input, &params[w], &params[b], layer.activation, z, out);
                    let mask = &mut self.masks[i];
                    drop_out(out, mask, (layer.outputs, members), l, dropping);
                }
                LayerKind::EnsembleDense(l) => {
                    let outputs = mlp.layers()[l].outputs;
                    out.resize(input.len() / mlp.layers()[l].inputs * outputs, T::zero());
                    let layer = ensemble_of(mlp, params, l);
                    ensemble_forward(input, layer, out, &mut self.ensembles[i]);
                    let mask = &mut self.masks[i];
                    drop_out(out, mask, (outputs, members), l, dropping);
                }
                LayerKind::EnsembleLinear(l) => {
                    let (inputs, outputs) = (mlp.layers()[l].inputs, mlp.layers()[l].outputs);
                    let z = &mut self.z[i];
                    z.resize(input.len() / inputs * outputs, T::zero());
                    out.resize(z.len(), T::zero());
                    member_linear_forward(input, member_linear_of(mlp, params, l), z, out);
                    let mask = &mut self.masks[i];
                    drop_out(out, mask, (outputs, members), l, dropping);
                }
                LayerKind::Embed => {
                    let embedding = mlp.tabm_embedding().expect("TabM has its embedding");
                    let range = mlp.embedding_range().expect("TabM has its embedding");
                    out.resize(
                        input.len() / embedding.n_features() * embedding.output_width(),
                        T::zero(),
                    );
                    embedding_forward(embedding, &params[range], input, out, &mut self.embedded);
                }
                LayerKind::EnsembleView => {
                    out.clear();
                    for _ in 0..members {
                        out.extend_from_slice(input);
                    }
                }
                LayerKind::Scale => {
                    let affine = mlp.affine_range().expect("tabm-mini has its scaling");
                    scale_forward(input, &params[affine], members, out);
                }
                LayerKind::Norm(n) => {
                    out.resize(input.len(), T::zero());
                    let norm = norm_of(mlp, params, n);
                    let layer = mlp.norms()[n];
                    let saved = &mut self.saved[i];
                    match (layer.kind, dropping) {
                        (NormKind::Layer, _) => layer_norm_forward(input, norm, out, saved),
                        (NormKind::Batch, Some(d)) => {
                            let (momentum, running) = (layer.momentum, &mut running[n]);
                            match d.across {
                                None => batch_norm_forward_train(
                                    input, norm, momentum, running, out, saved,
                                ),
                                Some(across) => batch_norm_forward_train_across(
                                    input, norm, momentum, running, out, saved, across,
                                ),
                            }
                            .expect("the trainer refuses batches of one row for batch norm")
                        }
                        (NormKind::Batch, None) => {
                            batch_norm_forward_eval(input, norm, &running[n], out)
                        }
                    }
                }
                LayerKind::Activation(f) => {
                    out.clear();
                    out.extend(input.iter().map(|&v| f.forward(v)));
                }
                LayerKind::Skip => {
                    out.clear();
                    out.extend_from_slice(input);
                    skips.push(i);
                }
                LayerKind::Add => {
                    let kept = &done[skips.pop().expect("an add follows its skip")];
                    out.clear();
                    out.extend(input.iter().zip(kept).map(|(&a, &b)| a + b));
                }
            }
        }
        &self.out[steps - 1]
    }

    /// The backward pass from `grad_out` (dL/d output, which the loss
    /// wrote), after [`forward`](Self::forward) on the same `x`: every
    /// parameter's gradient into `grads`.
    /// `across`: as the forward pass's [`Dropping::across`].
    pub fn backward(
        &mut self,
        mlp: &Mlp,
        (params, grads): (&[T], &mut [T]),
        x: &[T],
        grad_out: &[T],
        across: Option<&dyn BatchSums>,
    ) {
        self.grad.clear();
        self.grad.extend_from_slice(grad_out);
        self.skip_grads.clear();
        let members = mlp.members();
        for (i, &kind) in mlp.kinds().iter().enumerate().rev() {
            let input: &[T] = if i == 0 { x } else { &self.out[i - 1] };
            let wants_input_grad = parameters_before(mlp, i);
            if let LayerKind::Dense(_)
            | LayerKind::EnsembleDense(_)
            | LayerKind::EnsembleLinear(_) = kind
            {
                for (g, &m) in self.grad.iter_mut().zip(&self.masks[i]) {
                    *g = *g * m;
                }
            }
            match kind {
                LayerKind::Dense(l) => {
                    let layer = mlp.layers()[l];
                    let (w, b) = (mlp.weight_range(l), mlp.bias_range(l));
                    let (head, tail) = grads.split_at_mut(b.start);
                    let input_grad = wants_input_grad.then_some(&mut self.input_grad);
                    dense_backward(
                        input,
                        &params[w.clone()],
                        &self.z[i],
                        layer.activation,
                        &mut self.grad,
                        &mut head[w],
                        &mut tail[..b.len()],
                        input_grad,
                    );
                    std::mem::swap(&mut self.grad, &mut self.input_grad);
                }
                LayerKind::EnsembleDense(l) => {
                    let layer = ensemble_of(mlp, params, l);
                    let mut gradients = EnsembleGradients::default();
                    let input_grad = wants_input_grad.then_some(&mut self.input_grad);
                    let saved = &self.ensembles[i];
                    ensemble_backward(
                        input,
                        layer,
                        saved,
                        &mut self.grad,
                        &mut gradients,
                        input_grad,
                    );
                    let (r, s) = mlp.scaling_ranges(l);
                    grads[mlp.weight_range(l)].copy_from_slice(&gradients.weight);
                    grads[r].copy_from_slice(&gradients.r);
                    grads[s].copy_from_slice(&gradients.s);
                    grads[mlp.bias_range(l)].copy_from_slice(&gradients.bias);
                    std::mem::swap(&mut self.grad, &mut self.input_grad);
                }
                LayerKind::EnsembleLinear(l) => {
                    let layer = member_linear_of(mlp, params, l);
                    let (w, b) = (mlp.weight_range(l), mlp.bias_range(l));
                    let (head, tail) = grads.split_at_mut(b.start);
                    let param_grads = (&mut head[w], &mut tail[..b.len()]);
                    let input_grad = wants_input_grad.then_some(&mut self.input_grad);
                    let z = &self.z[i];
                    member_linear_backward(
                        input,
                        layer,
                        z,
                        &mut self.grad,
                        param_grads,
                        input_grad,
                    );
                    std::mem::swap(&mut self.grad, &mut self.input_grad);
                }
                LayerKind::Scale => {
                    let affine = mlp.affine_range().expect("tabm-mini has its scaling");
                    let input_grad = wants_input_grad.then_some(&mut self.input_grad);
                    let (scale, scale_grad) = (&params[affine.clone()], &mut grads[affine]);
                    let pair = (input, &self.grad[..]);
                    scale_backward(pair, scale, members, scale_grad, input_grad);
                    std::mem::swap(&mut self.grad, &mut self.input_grad);
                }
                LayerKind::Embed => {
                    let embedding = mlp.tabm_embedding().expect("TabM has its embedding");
                    let range = mlp.embedding_range().expect("TabM has its embedding");
                    let (params, grads) = (&params[range.clone()], &mut grads[range]);
                    let saved = &self.embedded;
                    embedding_backward(embedding, params, input, saved, &mut self.grad, grads);
                }
                LayerKind::EnsembleView => {
                    if wants_input_grad {
                        view_backward(&self.grad, members, &mut self.input_grad);
                        std::mem::swap(&mut self.grad, &mut self.input_grad);
                    }
                }
                LayerKind::Norm(n) => {
                    let norm = norm_of(mlp, params, n);
                    let (gamma, beta) = mlp.norm_ranges(n);
                    let (head, tail) = grads.split_at_mut(beta.start);
                    self.input_grad.resize(self.grad.len(), T::zero());
                    let (dy, saved, dx) = (&self.grad, &self.saved[i], &mut self.input_grad);
                    let (dgamma, dbeta) = (&mut head[gamma], &mut tail[..beta.len()]);
                    match (mlp.norms()[n].kind, across) {
                        (NormKind::Layer, _) => {
                            layer_norm_backward(dy, norm, saved, dx, dgamma, dbeta)
                        }
                        (NormKind::Batch, None) => {
                            batch_norm_backward(dy, norm, saved, dx, dgamma, dbeta)
                        }
                        (NormKind::Batch, Some(across)) => {
                            batch_norm_backward_across(dy, norm, saved, dx, (dgamma, dbeta), across)
                        }
                    }
                    std::mem::swap(&mut self.grad, &mut self.input_grad);
                }
                LayerKind::Activation(f) => {
                    for (g, &v) in self.grad.iter_mut().zip(input) {
                        *g = *g * f.derivative(v);
                    }
                }
                // x + block(x): the add's gradient goes down the block and
                // waits at the skip, which adds it to the block's.
                LayerKind::Add => self.skip_grads.push(self.grad.clone()),
                LayerKind::Skip => {
                    let waiting = self.skip_grads.pop().expect("a skip has its add");
                    for (g, w) in self.grad.iter_mut().zip(waiting) {
                        *g = *g + w;
                    }
                }
            }
        }
    }

    /// What a rank whose share of a batch holds no rows does in a
    /// training pass of a network with batch normalisation shared by
    /// ranks: takes part in the ranks' sums in the order a pass over rows
    /// makes them (each norm's forward sums in order, then its gradient
    /// sums, last first), and moves the running statistics by the whole
    /// batch's as the other ranks do.
    pub fn take_part_in_sums(
        mlp: &Mlp,
        params: &[T],
        running: &mut [RunningStats<T>],
        across: &dyn BatchSums,
    ) {
        let batch_norms: Vec<usize> = (mlp.kinds().iter())
            .filter_map(|kind| match *kind {
                LayerKind::Norm(n) if mlp.norms()[n].kind == NormKind::Batch => Some(n),
                _ => None,
            })
            .collect();
        let mut saved = NormSaved::default();
        for &n in &batch_norms {
            let (norm, momentum) = (norm_of(mlp, params, n), mlp.norms()[n].momentum);
            let running = &mut running[n];
            batch_norm_forward_train_across(
                &[],
                norm,
                momentum,
                running,
                &mut [],
                &mut saved,
                across,
            )
            .expect("the trainer refuses batches of one row for batch norm");
        }
        for &n in batch_norms.iter().rev() {
            across.sum(&mut vec![0.0; 2 * mlp.norms()[n].width]);
        }
    }

    /// Bytes the buffers hold.
    pub fn capacity(&self) -> usize {
        self.out
            .iter()
            .chain(&self.z)
            .chain(&self.masks)
            .map(Vec::capacity)
            .sum::<usize>()
            + self.grad.capacity()
            + self.input_grad.capacity()
    }
}

/// Whether a step before step `i` has parameters, so that step `i`'s
/// backward pass carries the gradient on to its input.
fn parameters_before(mlp: &Mlp, i: usize) -> bool {
    mlp.kinds()[..i].iter().any(|kind| {
        !matches!(
            kind,
            LayerKind::EnsembleView | LayerKind::Skip | LayerKind::Activation(_)
        )
    })
}

/// BatchEnsemble layer `l` over the parameters.
fn ensemble_of<'a, T>(mlp: &Mlp, params: &'a [T], l: usize) -> Ensemble<'a, T> {
    let (r, s) = mlp.scaling_ranges(l);
    Ensemble {
        members: mlp.members(),
        weight: &params[mlp.weight_range(l)],
        r: &params[r],
        s: &params[s],
        bias: &params[mlp.bias_range(l)],
        activation: mlp.layers()[l].activation,
    }
}

/// The members' own linear layer `l` over the parameters.
fn member_linear_of<'a, T>(mlp: &Mlp, params: &'a [T], l: usize) -> MemberLinear<'a, T> {
    MemberLinear {
        members: mlp.members(),
        inputs: mlp.layers()[l].inputs,
        weight: &params[mlp.weight_range(l)],
        bias: &params[mlp.bias_range(l)],
        activation: mlp.layers()[l].activation,
    }
}

/// Normalisation `n` over the parameters.
fn norm_of<'a, T>(mlp: &Mlp, params: &'a [T], n: usize) -> Norm<'a, T> {
    let (gamma, beta) = mlp.norm_ranges(n);
    let layer = mlp.norms()[n];
    Norm {
        width: layer.width,
        weight: &params[gamma],
        bias: &params[beta],
        eps: layer.eps,
    }
}

/// Drops out dense layer `l`'s output in a training pass, keeping the
/// factors; each element's mask follows its place in the whole batch, as
/// the plain network's does, and a member's (of `members` whose rows the
/// pass stacks) its own columns past the others'.
fn drop_out<T: Gemm>(
    out: &mut [T],
    mask: &mut Vec<T>,
    (width, members): (usize, usize),
    l: usize,
    dropping: Option<Dropping<'_>>,
) {
    mask.clear();
    let Some(d) = dropping else { return };
    let Some(dropout) = d.layers.get(l).copied().flatten() else {
        return;
    };
    let per_member = out.len() / members;
    for (i, a) in out.iter_mut().enumerate() {
        let (member, at) = (i / per_member, i % per_member);
        let row = (d.offset + at / width) as u32;
        let column = (member * width + at % width) as u32;
        let f = T::of(dropout.factor(d.seed, d.step, l as u32, row, column) as f64);
        mask.push(f);
        *a = *a * f;
    }
}
