//! [`CpuBackend`]: the trainer's work on the CPU, a [`Network<f32>`] plus
//! the buffers its batches are gathered into.

use super::network::Network;
use super::pool::on_pool;
use crate::backend::{
    Backend, BackendConfig, BatchShare, BatchSums, DeviceData, LayerNorms, StepsReport, checks,
};
use crate::data::{Dataset, Targets};
use crate::error::{Error, Kept, Result};
use crate::loss::{Loss, RowWeights, TargetBatch};
use crate::model::Mlp;
use crate::stop::StopFlag;

/// Rows per chunk when evaluating or predicting, to bound memory.
const CHUNK_ROWS: usize = 8192;

/// The CPU backend: [`Network<f32>`] plus batch buffers.
#[derive(Debug)]
pub struct CpuBackend {
    net: Network<f32>,
    loss: Loss,
    x_batch: Vec<f32>,
    value_batch: Vec<f32>,
    label_batch: Vec<u32>,
    weight_batch: Vec<f32>,
    norms_every: Option<u64>,
    /// The largest batch of the run, when known.
    batch_rows: Option<usize>,
    /// Checked before every step of `train_steps`.
    stop_flag: Option<StopFlag>,
    /// Uploads made (the id of the current one).
    uploads: u64,
}

impl CpuBackend {
    /// A backend for `mlp` starting from `params` (length
    /// `mlp.parameter_count()`).
    ///
    /// # Panics
    /// If `params` has the wrong length; the trainer checks it first.
    pub fn new(mlp: &Mlp, params: Vec<f32>, config: &BackendConfig) -> CpuBackend {
        let mut net = Network::new(mlp.clone(), params, config.optimizer);
        net.set_grad_clip(config.grad_clip);
        net.set_dropout(&config.dropout, config.seed);
        CpuBackend {
            net,
            loss: config.loss,
            x_batch: Vec::new(),
            value_batch: Vec::new(),
            label_batch: Vec::new(),
            weight_batch: Vec::new(),
            norms_every: config.norms_every,
            batch_rows: config.batch_rows,
            stop_flag: config.stop_flag.clone(),
            uploads: 0,
        }
    }

    /// Gathers rows `indices` of `data` into the batch buffers and runs the
    /// forward and backward passes on them as the rows at `offset` of a
    /// batch of `batch_rows` (weighing `batch_weight` where the data set
    /// has weights); returns their summed loss over the batch's rows (or
    /// weight).
    fn forward_backward_rows(
        &mut self,
        data: &Dataset,
        indices: &[u32],
        (batch_rows, offset): (usize, usize),
        batch_weight: f64,
        across: Option<&dyn BatchSums>,
    ) -> f32 {
        // Gather the batch (the GPU does the same through data.wgsl).
        data.gather(
            indices,
            &mut self.x_batch,
            &mut self.value_batch,
            &mut self.label_batch,
        );
        data.gather_weights(indices, &mut self.weight_batch);
        let targets = match data.targets() {
            Targets::Classes(_) => TargetBatch::Classes(&self.label_batch),
            Targets::Values { .. } => TargetBatch::Values(&self.value_batch),
        };
        let weights = data.weights().map(|_| RowWeights {
            weights: &self.weight_batch,
            total: batch_weight,
        });
        self.net.weighted_loss_and_gradients(
            &self.x_batch,
            self.loss,
            targets,
            (batch_rows, offset),
            weights,
            across,
        )
    }

    /// [`LayerNorms::of`] the current gradients and parameters, the same
    /// values, each norm a share of its own when the step runs on the pool:
    /// a scikit-learn-style fit asks for them every step, and on the step's
    /// thread alone they took 8 % of a digits fit at (256, 256) (fit_timing
    /// with and without them, 221.6 / 239.0 ms, medians of 8).
    pub(super) fn layer_norms(&self, step: u64) -> Vec<LayerNorms> {
        let (mlp, grads, params) = (self.net.mlp(), self.net.grads(), self.net.params());
        if rayon::current_thread_index().is_none() {
            return LayerNorms::of(mlp, step, grads, params);
        }
        // Each layer's gradient norm and parameter norm in turn, widest
        // layer first, so the two largest go to different threads.
        let mut order: Vec<usize> = (0..mlp.layers().len()).collect();
        order.sort_by_key(|&l| std::cmp::Reverse(mlp.weight_range(l).len()));
        let items = order
            .iter()
            .flat_map(|&l| [(l, grads), (l, params)])
            .collect();
        let norms = super::share::share(items, |(l, v)| LayerNorms::norm(mlp, l, v));
        let mut out: Vec<LayerNorms> = order
            .iter()
            .zip(norms.chunks_exact(2))
            .map(|(&layer, pair)| LayerNorms {
                step,
                layer,
                grad_norm: pair[0],
                weight_norm: pair[1],
            })
            .collect();
        out.sort_by_key(|n| n.layer);
        out
    }

    /// The steps of [`Backend::train_steps`], arguments checked.
    fn steps(
        &mut self,
        data: &Dataset,
        order: &[u32],
        batch_size: usize,
        max_steps: u64,
        lr: f64,
    ) -> Result<StepsReport> {
        let mut result = StepsReport::default();
        for indices in order
            .chunks(batch_size)
            .take(max_steps.try_into().unwrap_or(usize::MAX))
        {
            if self.stop_flag.as_ref().is_some_and(StopFlag::is_requested) {
                result.stopped = true;
                break;
            }
            check_batch_norm_share(self.net.mlp(), &BatchShare::whole(indices))?;
            let batch_weight = data.weight_of(indices);
            // The forward pass moves the running statistics: kept so that a
            // step that diverges leaves them as they were.
            let buffers_before = self.net.mlp().has_batch_norm().then(|| self.net.buffers());
            let at = (indices.len(), 0);
            let loss = self.forward_backward_rows(data, indices, at, batch_weight, None);
            let step = self.net.step_count() + 1;
            if !loss.is_finite() {
                // Stopped before the update: parameters, state, running
                // statistics and step count are those from before the step
                // (as on the GPU).
                if let Some(buffers) = buffers_before {
                    self.net.set_buffers(&buffers, step - 1);
                }
                return Err(Error::Diverged {
                    step,
                    loss: loss as f64,
                    kept: Kept {
                        steps: step - 1,
                        epoch: 0,
                        rows_done: result.rows,
                        loss_sum: result.loss_sum,
                    },
                });
            }
            if self.norms_every.is_some_and(|n| step.is_multiple_of(n)) {
                result.norms.extend(self.layer_norms(step));
            }
            self.net.update(Some(lr));
            result.loss_sum += loss as f64 * batch_weight;
            result.rows += indices.len();
            result.steps += 1;
        }
        Ok(result)
    }
}

impl Backend for CpuBackend {
    /// `cpu: ` and the GEMM of the run's steps ([`super::gemm::gemms_of`]):
    /// the BLAS library's name only where a step's large products run on it
    /// (the small ones always run on the built-in GEMM).
    /// Products too small for the library do not load it (a loaded
    /// OpenBLAS starts its threads: ~4 ms, a tenth of a small fit); under
    /// `auto` the others' shapes are tried here, on the pool the steps will
    /// run on, unless their first products were already.
    fn name(&self) -> String {
        use super::gemm;
        let Some(rows) = self.batch_rows else {
            return format!("cpu: {}", gemm::gemm_name());
        };
        let products = self.net.step_products(rows);
        if !products.iter().any(|p| gemm::to_library(p.m, p.k, p.n)) {
            return "cpu: built-in GEMM".to_string();
        }
        format!("cpu: {}", on_pool(|| gemm::gemms_of(&products)))
    }

    fn parameters(&mut self) -> Result<Vec<f32>> {
        Ok(self.net.params().to_vec())
    }

    fn set_parameters(&mut self, params: &[f32]) -> Result<()> {
        checks::length(
            "parameters of the network",
            self.net.params_mut().len(),
            params.len(),
        )?;
        self.net.params_mut().copy_from_slice(params);
        Ok(())
    }

    fn optimizer_state(&mut self) -> Result<(Vec<f32>, u64)> {
        Ok((self.net.optimizer_state().to_vec(), self.net.step_count()))
    }

    fn buffers(&mut self) -> Result<Vec<f32>> {
        Ok(self.net.buffers())
    }

    fn set_buffers(&mut self, buffers: &[f32]) -> Result<()> {
        checks::length(
            "buffers of the network (batch normalisations' running statistics)",
            self.net.mlp().buffer_count(),
            buffers.len(),
        )?;
        let step = self.net.step_count();
        self.net.set_buffers(buffers, step);
        Ok(())
    }

    fn set_optimizer_state(&mut self, state: &[f32], step: u64) -> Result<()> {
        let expected = self.net.optimizer_state().len();
        checks::length("optimizer state", expected, state.len())?;
        self.net.set_optimizer_state(state, step);
        Ok(())
    }

    fn upload<'a>(&mut self, data: &'a Dataset) -> Result<DeviceData<'a>> {
        // The CPU reads the rows where they are.
        self.uploads += 1;
        Ok(DeviceData::new(self.uploads, data))
    }

    fn forward_backward(&mut self, data: &DeviceData<'_>, share: BatchShare<'_>) -> Result<f64> {
        data.check(Some(self.uploads))?;
        share.check()?;
        check_batch_norm_share(self.net.mlp(), &share)?;
        let across = share.across.filter(|_| self.net.mlp().has_batch_norm());
        if share.rows.is_empty() {
            match across {
                Some(across) => self.net.take_part_in_batch_sums(across),
                None => self.net.grads_mut().fill(0.0),
            }
            return Ok(0.0);
        }
        let dataset = data.dataset();
        let batch_weight = share
            .batch_weight
            .unwrap_or_else(|| dataset.weight_of(share.rows));
        let at = (share.batch_rows, share.offset);
        let loss = match across {
            // The ranks' sums are made from this thread, the one that
            // makes the run's other collective calls (MPI's funnelled
            // threading), so the pass runs here, off the pool.
            Some(across) => {
                self.forward_backward_rows(dataset, share.rows, at, batch_weight, Some(across))
            }
            None => self.on_pool_if_shared(share.batch_rows, |backend| {
                backend.forward_backward_rows(dataset, share.rows, at, batch_weight, None)
            }),
        };
        Ok(loss as f64)
    }

    fn gradients(&mut self) -> Result<Vec<f32>> {
        Ok(self.net.grads().to_vec())
    }

    fn set_gradients(&mut self, grads: &[f32]) -> Result<()> {
        let own = self.net.grads_mut();
        if grads.len() != own.len() {
            return Err(Error::Shape {
                what: "gradients of the network".into(),
                expected: own.len(),
                got: grads.len(),
            });
        }
        own.copy_from_slice(grads);
        Ok(())
    }

    fn update(&mut self, lr: f64) -> Result<()> {
        let rows = self.batch_rows.unwrap_or(1);
        self.on_pool_if_shared(rows, |backend| backend.net.update(Some(lr)));
        Ok(())
    }

    fn train_steps(
        &mut self,
        data: &DeviceData<'_>,
        order: &[u32],
        batch_size: usize,
        max_steps: u64,
        lr: f64,
    ) -> Result<StepsReport> {
        data.check(Some(self.uploads))?;
        checks::steps(order, data.dataset().rows(), batch_size)?;
        let dataset = data.dataset();
        if self.net.step_uses_threads(batch_size) {
            on_pool(|| self.steps(dataset, order, batch_size, max_steps, lr))
        } else {
            // Nothing to share: handing the run to the pool would only add
            // two wake-ups a call (a tenth of an iris-sized fit's epoch).
            self.steps(dataset, order, batch_size, max_steps, lr)
        }
    }

    fn evaluate(&mut self, data: &Dataset) -> Result<(f64, Option<usize>)> {
        let rows = data.rows().min(CHUNK_ROWS);
        self.on_pool_if_shared(rows, |backend| backend.evaluate_chunks(data))
    }

    fn predict(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        let inputs = self.net.mlp().inputs();
        checks::rows_of("inputs to predict", inputs, x.len())?;
        let rows = (x.len() / inputs.max(1)).min(CHUNK_ROWS);
        Ok(self.on_pool_if_shared(rows, |backend| backend.predict_chunks(x)))
    }

    fn evaluation_rows(&self) -> Option<usize> {
        Some(CHUNK_ROWS)
    }

    fn memory_bytes(&self) -> u64 {
        self.net.memory_bytes()
            + 4 * (self.x_batch.capacity()
                + self.value_batch.capacity()
                + self.label_batch.capacity()) as u64
    }
}

impl CpuBackend {
    /// `work` on the backend's pool ([`on_pool`]) where a pass over `rows`
    /// rows is shared among threads, else here: every parallel pass runs
    /// on the backend's own pools, which a forked process makes anew,
    /// never on rayon's global pool, whose threads a child lacks.
    fn on_pool_if_shared<R: Send>(
        &mut self,
        rows: usize,
        work: impl FnOnce(&mut CpuBackend) -> R + Send,
    ) -> R {
        if self.net.step_uses_threads(rows) {
            on_pool(|| work(self))
        } else {
            work(self)
        }
    }

    /// [`Backend::evaluate`] in chunks of [`CHUNK_ROWS`] rows.
    fn evaluate_chunks(&mut self, data: &Dataset) -> Result<(f64, Option<usize>)> {
        let width = self.net.mlp().outputs();
        let mut loss_sum = 0.0;
        let mut correct: Option<usize> = None;
        let mut grad = Vec::new();
        for start in (0..data.rows()).step_by(CHUNK_ROWS) {
            let end = (start + CHUNK_ROWS).min(data.rows());
            let x = &data.x()[start * data.features()..end * data.features()];
            let targets = data.target_batch(start..end);
            let output = self.net.forward(x);
            grad.resize(output.len(), 0.0);
            let loss = match data.weights() {
                Some(w) => {
                    let weights = &w[start..end];
                    let total: f64 = weights.iter().map(|&w| w as f64).sum();
                    let rows = RowWeights { weights, total };
                    let loss = self
                        .loss
                        .forward_backward_weighted(output, width, targets, &mut grad, rows);
                    loss as f64 * total
                }
                None => {
                    let loss = self
                        .loss
                        .forward_backward(output, width, targets, &mut grad);
                    loss as f64 * (end - start) as f64
                }
            };
            loss_sum += loss;
            if let Some(c) = self.loss.correct(output, width, targets) {
                *correct.get_or_insert(0) += c;
            }
        }
        Ok((loss_sum, correct))
    }

    /// [`Backend::predict`] in chunks of [`CHUNK_ROWS`] rows.
    fn predict_chunks(&mut self, x: &[f32]) -> Vec<f32> {
        let inputs = self.net.mlp().inputs();
        let mut out = Vec::with_capacity(x.len() / inputs * self.net.mlp().outputs());
        for chunk in x.chunks(CHUNK_ROWS * inputs) {
            out.extend_from_slice(self.net.forward(chunk));
        }
        out
    }
}

/// Batch normalisation needs the statistics of the whole batch, of two
/// rows at least: a last batch of one row is refused (naming the batch
/// size to change), and so is a share of a batch without the ranks' sums
/// that make its statistics the whole batch's ([`BatchShare::across`]).
fn check_batch_norm_share(mlp: &Mlp, share: &BatchShare<'_>) -> Result<()> {
    if !mlp.has_batch_norm() {
        return Ok(());
    }
    if share.rows.len() < share.batch_rows && share.across.is_none() {
        return Err(crate::error::Error::Config(format!(
            "batch normalisation over a share of a batch needs the batch's statistics from every \
             share (BatchShare::across, which a trainer over ranks gives): this share holds {} of \
             the batch's {} rows",
            share.rows.len(),
            share.batch_rows
        )));
    }
    if share.batch_rows < 2 {
        return Err(crate::error::Error::Config(
            "batch normalisation needs at least 2 rows a batch, and a batch of this epoch holds 1 \
             (the rows left over by the batch size): choose a batch size that leaves none or more \
             than one"
                .into(),
        ));
    }
    Ok(())
}
