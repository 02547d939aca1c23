//! The network on the CPU: parameters, gradients and optimizer state, the
//! forward and backward passes layer by layer, and the update.

use super::dense::{self, dense_backward, dense_forward};
use super::gemm::{self, Gemm};
use super::members_layers::ensemble_mean;
use super::norm::RunningStats;
use super::optimizer::{self, clip_gradients, optimizer_step};
use super::sequence::{Dropping, Sequence};
use crate::backend::BatchSums;
use crate::dropout::Dropout;
use crate::loss::{Loss, RowWeights, TargetBatch};
use crate::model::Mlp;
use crate::optim::{GradClip, Optimizer};

/// A network's parameters, gradients and optimizer state on the CPU, with the
/// activations of the last forward pass kept for the backward pass.
///
/// ```
/// use retroprop::cpu::Network;
/// use retroprop::{Activation, Init, Loss, Mlp, Sgd, TargetBatch};
/// let mlp = Mlp::new(&[2, 3, 1], Activation::Tanh, Activation::Identity)?;
/// let params: Vec<f64> = mlp.init(Init::XavierUniform, 7).iter().map(|&p| p as f64).collect();
/// let mut net = Network::new(mlp, params, Sgd::default().lr(0.1).into());
/// let x = [0.0, 1.0, 1.0, 0.0];
/// let y = [1.0f32, 1.0];
/// let before = net.train_step(&x, Loss::Mse, TargetBatch::Values(&y));
/// let after = net.train_step(&x, Loss::Mse, TargetBatch::Values(&y));
/// assert!(after < before);
/// # Ok::<(), retroprop::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Network<T: Gemm> {
    mlp: Mlp,
    params: Vec<T>,
    grads: Vec<T>,
    optimizer: Optimizer,
    clip: GradClip,
    state: Vec<T>,
    step: u64,
    /// Pre-activations Z and activations A of each layer, for the last batch.
    z: Vec<Vec<T>>,
    a: Vec<Vec<T>>,
    /// Per-layer dropout and its seed (training passes only), and the
    /// factors of the last training forward pass (0 or 1/(1−p)).
    dropout: Vec<Option<Dropout>>,
    dropout_seed: u32,
    masks: Vec<Vec<T>>,
    /// dL/dA of the current layer and dL/dZ, reused across steps.
    grad_a: Vec<T>,
    grad_z: Vec<T>,
    /// The passes of a network that is not plain ([`Mlp::is_plain`]).
    sequence: Sequence<T>,
    /// Each normalisation's running statistics (BatchNorm's; unused by
    /// LayerNorm).
    running: Vec<RunningStats<T>>,
    /// A TabM network's prediction, the members' mean.
    ensemble_out: Vec<T>,
}

impl<T: Gemm> Network<T> {
    /// A network with the given parameters (length `mlp.parameter_count()`).
    ///
    /// # Panics
    /// If `params` has the wrong length or the optimizer is invalid; the
    /// trainer validates both and returns errors instead.
    pub fn new(mlp: Mlp, params: Vec<T>, optimizer: Optimizer) -> Network<T> {
        assert_eq!(params.len(), mlp.parameter_count(), "parameter count");
        let n = params.len();
        let layers = mlp.layers().len();
        let running = mlp
            .norms()
            .iter()
            .map(|n| RunningStats::new(n.width))
            .collect();
        Network {
            grads: vec![T::zero(); n],
            state: vec![T::of(optimizer.initial_state()); optimizer.state_slots() * n],
            mlp,
            params,
            optimizer,
            clip: GradClip::default(),
            step: 0,
            z: vec![Vec::new(); layers],
            a: vec![Vec::new(); layers],
            grad_a: Vec::new(),
            grad_z: Vec::new(),
            dropout: vec![None; layers],
            dropout_seed: 0,
            masks: vec![Vec::new(); layers],
            sequence: Sequence::default(),
            running,
            ensemble_out: Vec::new(),
        }
    }

    /// Whether a training step on `rows` rows shares any of its passes
    /// (a product, a layer's elementwise pass, the update) among threads;
    /// when none does, the step never touches the thread pool.
    pub(crate) fn step_uses_threads(&self, rows: usize) -> bool {
        optimizer::splits(self.params.len())
            || self.mlp.layers().iter().any(|layer| {
                gemm::wants_threads(rows, layer.inputs, layer.outputs)
                    || dense::splits(rows, layer.outputs)
                    || dense::forward_splits(rows, layer.outputs)
            })
    }

    /// The products of a training step on `rows` rows, by shape: the
    /// forward product, the weight gradient and (past the first layer) the
    /// input gradient of each layer.
    pub(crate) fn step_products(&self, rows: usize) -> Vec<gemm::Shape> {
        let layers = self.mlp.layers().iter().enumerate();
        layers
            .flat_map(|(i, layer)| {
                dense::layer_products::<T>(rows, layer.inputs, layer.outputs, i > 0)
            })
            .collect()
    }

    /// The network description.
    pub fn mlp(&self) -> &Mlp {
        &self.mlp
    }

    /// The flat parameter vector.
    pub fn params(&self) -> &[T] {
        &self.params
    }

    /// The flat parameter vector, to change in place.
    pub fn params_mut(&mut self) -> &mut [T] {
        &mut self.params
    }

    /// The gradients of the last backward pass, laid out like the parameters.
    pub fn grads(&self) -> &[T] {
        &self.grads
    }

    /// The optimizer state, slot-major.
    pub fn optimizer_state(&self) -> &[T] {
        &self.state
    }

    /// Bytes held for parameters, gradients, state and activations.
    pub fn memory_bytes(&self) -> u64 {
        let floats = self.params.len()
            + self.grads.len()
            + self.state.len()
            + self
                .z
                .iter()
                .chain(&self.a)
                .map(Vec::capacity)
                .sum::<usize>()
            + self.grad_a.capacity()
            + self.grad_z.capacity()
            + self.sequence.capacity();
        (floats * std::mem::size_of::<T>()) as u64
    }

    /// Replaces the optimizer state (slot-major) and the step count.
    ///
    /// # Panics
    /// If `state` does not have `state_slots() × parameters` values.
    pub fn set_optimizer_state(&mut self, state: &[T], step: u64) {
        self.state.copy_from_slice(state);
        self.step = step;
    }

    /// Each normalisation's running statistics (BatchNorm's), in the
    /// order of [`Mlp::norms`].
    pub fn running_stats(&self) -> &[RunningStats<T>] {
        &self.running
    }

    /// The running statistics as one flat vector in
    /// [`Mlp::buffer_ranges`]'s layout.
    pub fn buffers(&self) -> Vec<T> {
        let mut buffers = vec![T::zero(); self.mlp.buffer_count()];
        for (n, stats) in self.running.iter().enumerate() {
            if let Some((mean, var)) = self.mlp.buffer_ranges(n) {
                buffers[mean].copy_from_slice(&stats.mean);
                buffers[var].copy_from_slice(&stats.var);
            }
        }
        buffers
    }

    /// Replaces the running statistics from [`Network::buffers`]'s layout;
    /// their batch counts become `batches`.
    ///
    /// # Panics
    /// If `buffers` does not have [`Mlp::buffer_count`] values.
    pub fn set_buffers(&mut self, buffers: &[T], batches: u64) {
        assert_eq!(buffers.len(), self.mlp.buffer_count(), "buffer count");
        for (n, stats) in self.running.iter_mut().enumerate() {
            if let Some((mean, var)) = self.mlp.buffer_ranges(n) {
                stats.mean.copy_from_slice(&buffers[mean]);
                stats.var.copy_from_slice(&buffers[var]);
                stats.batches = batches;
            }
        }
    }

    /// A training pass over no rows of a batch that ranks share
    /// (the sequence's `take_part_in_sums`): the gradients are zeros.
    pub fn take_part_in_batch_sums(&mut self, across: &dyn BatchSums) {
        Sequence::take_part_in_sums(&self.mlp, &self.params, &mut self.running, across);
        self.grads.fill(T::zero());
    }

    /// Number of optimizer steps taken.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The forward pass over `x` (rows × inputs); returns the output
    /// (rows × outputs).
    pub fn forward(&mut self, x: &[T]) -> &[T] {
        self.forward_pass(x, None, None)
    }

    /// The forward pass; a training pass (`Some(offset)`: its rows sit
    /// `offset` rows into the batch) drops out each layer's output (before
    /// the next layer reads it) and keeps the factors.
    /// `across`: where batch normalisation's statistics become the whole
    /// batch's ([`BatchShare::across`](crate::backend::BatchShare::across)).
    fn forward_pass(
        &mut self,
        x: &[T],
        training: Option<usize>,
        across: Option<&dyn BatchSums>,
    ) -> &[T] {
        let rows = x.len() / self.mlp.inputs();
        let step = (self.step + 1) as u32;
        if !self.mlp.is_plain() {
            let dropping = training.map(|offset| Dropping {
                layers: &self.dropout,
                seed: self.dropout_seed,
                step,
                offset,
                across,
            });
            let (mlp, params) = (&self.mlp, &self.params);
            let out = self
                .sequence
                .forward(mlp, params, &mut self.running, x, dropping);
            return match mlp.tabm_spec() {
                Some(spec) if training.is_none() => {
                    let width = mlp.outputs();
                    ensemble_mean(out, spec.k, width, spec.mean, &mut self.ensemble_out);
                    &self.ensemble_out
                }
                _ => out,
            };
        }
        for (l, layer) in self.mlp.layers().iter().enumerate() {
            let (done, rest) = self.a.split_at_mut(l);
            let input = if l == 0 { x } else { &done[l - 1] };
            let z = &mut self.z[l];
            let a = &mut rest[0];
            z.resize(rows * layer.outputs, T::zero());
            a.resize(rows * layer.outputs, T::zero());
            dense_forward(
                input,
                &self.params[self.mlp.weight_range(l)],
                &self.params[self.mlp.bias_range(l)],
                layer.activation,
                z,
                a,
            );
            if let (Some(offset), Some(d)) = (training, self.dropout[l]) {
                // The mask of an element follows its place in the whole
                // batch, so a batch split into shares drops the same ones.
                let mask = &mut self.masks[l];
                mask.clear();
                for (i, a) in a.iter_mut().enumerate() {
                    let (row, column) = (
                        (offset + i / layer.outputs) as u32,
                        (i % layer.outputs) as u32,
                    );
                    let f = T::of(d.factor(self.dropout_seed, step, l as u32, row, column) as f64);
                    mask.push(f);
                    *a = *a * f;
                }
            }
        }
        &self.a[self.mlp.layers().len() - 1]
    }

    /// Forward pass, loss, and backward pass by the chain rule: fills
    /// [`grads`](Self::grads) and returns the batch's mean loss.
    pub fn loss_and_gradients(&mut self, x: &[T], loss: Loss, targets: TargetBatch<'_>) -> T {
        let rows = x.len() / self.mlp.inputs();
        self.loss_and_gradients_in_batch(x, loss, targets, rows, 0)
    }

    /// [`loss_and_gradients`](Self::loss_and_gradients) for `x` as the
    /// rows at `offset` of a batch of `batch_rows` rows: the loss and
    /// gradients are divided by the whole batch (see
    /// [`Loss::forward_backward_in_batch`]) and dropout follows each row's
    /// place in it. Returns the share's summed loss over `batch_rows`.
    pub fn loss_and_gradients_in_batch(
        &mut self,
        x: &[T],
        loss: Loss,
        targets: TargetBatch<'_>,
        batch_rows: usize,
        offset: usize,
    ) -> T {
        let at = (batch_rows, offset);
        self.weighted_loss_and_gradients(x, loss, targets, at, None, None)
    }

    /// [`loss_and_gradients_in_batch`](Self::loss_and_gradients_in_batch)
    /// with each row weighted in the loss (`weights`: see
    /// [`Loss::forward_backward_weighted`]); unweighted without. `across`:
    /// where batch normalisation's statistics become the whole batch's
    /// (a batch shared by ranks: [`BatchShare::across`](crate::backend::BatchShare::across)).
    pub fn weighted_loss_and_gradients(
        &mut self,
        x: &[T],
        loss: Loss,
        targets: TargetBatch<'_>,
        (batch_rows, offset): (usize, usize),
        weights: Option<RowWeights<'_>>,
        across: Option<&dyn BatchSums>,
    ) -> T {
        let width = self.mlp.outputs();
        let members = self.mlp.members();
        let stacked = (members > 1).then(|| StackedTargets::of(targets, weights, members));
        let (targets, weights, batch_rows) = match &stacked {
            Some(s) => (s.targets(), s.weights(weights), batch_rows * members),
            None => (targets, weights, batch_rows),
        };
        let mut grad_z = std::mem::take(&mut self.grad_z);
        let output = self.forward_pass(x, Some(offset), across);
        grad_z.resize(output.len(), T::zero());
        let value = match weights {
            Some(weights) => {
                loss.forward_backward_weighted(output, width, targets, &mut grad_z, weights)
            }
            None => loss.forward_backward_in_batch(output, width, targets, &mut grad_z, batch_rows),
        };
        self.grad_z = grad_z;
        if !self.mlp.is_plain() {
            let (params, grads) = (&self.params[..], &mut self.grads[..]);
            self.sequence
                .backward(&self.mlp, (params, grads), x, &self.grad_z, across);
            return value;
        }
        let last = self.mlp.layers().len() - 1;
        for l in (0..=last).rev() {
            let layer = self.mlp.layers()[l];
            if self.dropout[l].is_some() {
                // A = f(Z) ⊙ m, so dL/d f(Z) = dA ⊙ m.
                for (g, &m) in self.grad_z.iter_mut().zip(&self.masks[l]) {
                    *g = *g * m;
                }
            }
            let input = if l == 0 { x } else { &self.a[l - 1] };
            let (weight_grad, bias_grad) = {
                let (w, b) = (self.mlp.weight_range(l), self.mlp.bias_range(l));
                let (head, tail) = self.grads.split_at_mut(b.start);
                (&mut head[w], &mut tail[..b.len()])
            };
            let input_grad = (l > 0).then_some(&mut self.grad_a);
            dense_backward(
                input,
                &self.params[self.mlp.weight_range(l)],
                &self.z[l],
                layer.activation,
                &mut self.grad_z,
                weight_grad,
                bias_grad,
                input_grad,
            );
            if l > 0 {
                std::mem::swap(&mut self.grad_a, &mut self.grad_z);
            }
        }
        value
    }

    /// Sets dropout: probability `p[l]` for layer l's output during
    /// training passes ([`loss_and_gradients`](Self::loss_and_gradients)),
    /// none in [`forward`](Self::forward); masks are drawn from `seed`.
    pub fn set_dropout(&mut self, p: &[f32], seed: u64) {
        let layers = self.mlp.layers().len();
        // Never on the output layer: the loss reads it; nor on a residual
        // network's input layer (rtdl's ResNet drops out inside its blocks).
        let first = usize::from(self.mlp.residual_spec().is_some());
        self.dropout = (0..layers)
            .map(|l| {
                if l + 1 < layers && l >= first {
                    p.get(l).and_then(|&p| Dropout::new(p))
                } else {
                    None
                }
            })
            .collect();
        self.dropout_seed = crate::dropout::mask_seed(seed);
    }

    /// Sets gradient clipping, applied by [`update`](Self::update).
    pub fn set_grad_clip(&mut self, clip: GradClip) {
        self.clip = clip;
    }

    /// One optimizer step on the current gradients (clipped first when
    /// clipping is set), at the optimizer's learning rate or `lr` when given.
    pub fn update(&mut self, lr: Option<f64>) {
        clip_gradients(&self.clip, &mut self.grads);
        self.step += 1;
        let lr = lr.unwrap_or(self.optimizer.lr());
        optimizer_step(
            &self.optimizer,
            &mut self.params,
            &self.grads,
            &mut self.state,
            self.step,
            lr,
        );
    }

    /// The gradients, to change in place between the backward pass and
    /// [`update`](Self::update).
    pub fn grads_mut(&mut self) -> &mut [T] {
        &mut self.grads
    }

    /// Forward, backward and update on one batch; returns the batch loss
    /// (before the update).
    pub fn train_step(&mut self, x: &[T], loss: Loss, targets: TargetBatch<'_>) -> T {
        let value = self.loss_and_gradients(x, loss, targets);
        self.update(None);
        value
    }
}

/// A batch's targets and row weights given to each of a TabM network's
/// members (whose rows its passes stack, `[k, rows]`): the loss over
/// them is the mean of the members' losses.
struct StackedTargets {
    classes: Vec<u32>,
    values: Vec<f32>,
    weights: Vec<f32>,
    members: usize,
}

impl StackedTargets {
    fn of(targets: TargetBatch<'_>, weights: Option<RowWeights<'_>>, members: usize) -> Self {
        let repeat = |v: &[f32]| v.repeat(members);
        StackedTargets {
            classes: match targets {
                TargetBatch::Classes(c) => c.repeat(members),
                TargetBatch::Values(_) => Vec::new(),
            },
            values: match targets {
                TargetBatch::Values(v) => repeat(v),
                TargetBatch::Classes(_) => Vec::new(),
            },
            weights: weights.map_or(Vec::new(), |w| repeat(w.weights)),
            members,
        }
    }

    fn targets(&self) -> TargetBatch<'_> {
        if self.classes.is_empty() {
            TargetBatch::Values(&self.values)
        } else {
            TargetBatch::Classes(&self.classes)
        }
    }

    /// The stacked weights, their total every member's.
    fn weights(&self, given: Option<RowWeights<'_>>) -> Option<RowWeights<'_>> {
        given.map(|w| RowWeights {
            weights: &self.weights,
            total: w.total * self.members as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::Activation;
    use crate::optim::Adam;

    fn net(sizes: &[usize]) -> Network<f32> {
        let mlp = Mlp::new(sizes, Activation::Relu, Activation::Identity).unwrap();
        let params = vec![0.0; mlp.parameter_count()];
        Network::new(mlp, params, Adam::default().into())
    }

    #[test]
    fn only_steps_with_a_pass_to_share_use_the_pool() {
        // Iris-sized: 150 × 4 × 100 multiply-adds, 15 000 activations,
        // 803 parameters: every pass runs on one thread.
        assert!(!net(&[4, 100, 3]).step_uses_threads(150));
        // Digits-sized: 200 × 64 × 256 ≥ 2²¹ is split.
        assert!(net(&[64, 256, 256, 10]).step_uses_threads(200));
        // One row but 2¹⁶ parameters: the update is split.
        assert!(net(&[256, 256]).step_uses_threads(1));
        // 300 rows of 256: the backward elementwise pass is split (256
        // rows a job), and the forward one from 32 Ki values on.
        assert!(net(&[1, 256]).step_uses_threads(300));
        assert!(net(&[1, 256]).step_uses_threads(128));
        assert!(!net(&[1, 256]).step_uses_threads(127));
    }

    #[test]
    fn a_step_reaches_the_library_only_with_a_product_large_enough() {
        let reaches = |sizes: &[usize], rows| {
            net(sizes)
                .step_products(rows)
                .iter()
                .any(|p| gemm::to_library(p.m, p.k, p.n))
        };
        // The forward product 1024 × 784 × 1024 is 2^29.6 multiply-adds.
        assert!(reaches(&[784, 1024, 10], 1024));
        // 200 × 256 × 256 = 2^23.6: below the library's 2^25.
        assert!(!reaches(&[64, 256, 256, 10], 200));
        // Only the weight gradient: 1024 × 1024 × 64 (the forward's k = 64
        // is too short for the library).
        assert!(reaches(&[64, 1024], 1024));
        // Only the second layer's input gradient, k = 4096 (the others'
        // k = 127 is too short); the first layer has none.
        assert!(reaches(&[8, 127, 4096], 127));
        assert!(!reaches(&[127, 4096], 127));
    }

    #[test]
    fn the_step_products_are_those_a_step_computes() {
        // Sizes no other test uses, to find this step's products among
        // those every test of this binary asked for.
        let sizes = [37, 29, 23, 19];
        let rows = 31;
        let mut net = net(&sizes);
        let x = vec![0.5f32; rows * sizes[0]];
        let labels = vec![1u32; rows];
        net.loss_and_gradients(&x, Loss::CrossEntropy, TargetBatch::Classes(&labels));
        let ours = |m: &usize| [37, 29, 23, 19, 31].contains(m);
        let mut seen: Vec<gemm::Shape> = gemm::tests::SEEN.lock().unwrap().clone();
        seen.retain(|s| ours(&s.m) && ours(&s.k) && ours(&s.n));
        let mut expected = net.step_products(rows);
        let key = |s: &gemm::Shape| (s.m, s.k, s.n, s.a_transposed, s.b_transposed);
        seen.sort_by_key(key);
        expected.sort_by_key(key);
        assert_eq!(seen, expected);
    }
}
