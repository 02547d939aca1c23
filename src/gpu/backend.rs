//! Training on the GPU: buffers allocated once, the data set resident, many
//! steps recorded into one submission, at most two in flight
//! (src/gpu/steps.rs).

use super::context::{GpuContext, Submitted};
use super::ensemble::Ensemble;
use super::pipelines::Kernels;
use super::plan::{PassKey, PassResources, Plan};
use super::profile::Profiler;
use super::resources::{ParamLayout, Resident, Scratch, Textures, storage, storage_init};
use super::sequence::Sequence;
use super::uniforms::StepUniform;
use super::update::UpdateGroups;
use super::window::{Batch, InFlight, StepAt};
use crate::backend::{
    Backend, BatchShare, DeviceData, LocalFuture, StepProfile, StepsReport, checks,
};
use crate::data::{Dataset, Targets};
use crate::error::{Error, Kept, Result};
use crate::loss::Loss;
use crate::model::Mlp;
use crate::optim::UpdateRule;
use crate::stop::StopFlag;
use std::cell::RefCell;
use std::collections::HashMap;

/// Waits for one of the asynchronous calls: natively by polling the device
/// until its read-back is done.
#[cfg(not(target_arch = "wasm32"))]
fn block_on<T>(call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    pollster::block_on(call)
}

/// The browser cannot block on a read-back: its GPU answers only once the
/// page's event loop runs again.
#[cfg(target_arch = "wasm32")]
fn block_on<T>(_call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    Err(Error::Gpu(
        "a blocking GPU read-back is impossible in the browser: use the _async calls".into(),
    ))
}

/// The wgpu backend: the whole step in WGSL compute shaders, parameters,
/// gradients and optimizer state each in one flat buffer, the training data
/// resident, many steps recorded into one submission.
pub struct GpuBackend {
    pub(super) ctx: GpuContext,
    pub(super) kernels: Kernels,
    pub(super) mlp: Mlp,
    pub(super) loss: Loss,
    pub(super) rule: UpdateRule,
    pub(super) layout: ParamLayout,
    pub(super) params: wgpu::Buffer,
    /// The parameters and optimizer state as they were before the current
    /// `train_steps`: put back when a step diverges (then the good steps
    /// before it run again), so that a divergence keeps what the CPU keeps.
    pub(super) params_before: wgpu::Buffer,
    pub(super) state_before: wgpu::Buffer,
    pub(super) grads: wgpu::Buffer,
    pub(super) state: wgpu::Buffer,
    /// Rows the activation buffers hold.
    pub(super) capacity: usize,
    pub(super) x_batch: wgpu::Buffer,
    pub(super) y_batch: wgpu::Buffer,
    pub(super) z: Vec<wgpu::Buffer>,
    pub(super) a: Vec<wgpu::Buffer>,
    pub(super) dz: Vec<wgpu::Buffer>,
    /// The matmul operands as textures, for the texture matmul.
    pub(super) textures: Option<Textures>,
    pub(super) row_stats: wgpu::Buffer,
    /// Dropout per layer (training passes) and the seed of its masks.
    pub(super) dropout: Vec<Option<crate::dropout::Dropout>>,
    pub(super) dropout_seed: u32,
    /// The steps of a network that is not plain (normalisations,
    /// activations alone, residual adds) and BatchNorm's running statistics.
    pub(super) sequence: Option<Sequence>,
    /// A TabM network's kernels and buffers (src/gpu/ensemble.rs).
    pub(super) ensemble: Option<Ensemble>,
    /// Stand-ins for bindings a kernel variant does not use.
    pub(super) unused_read: wgpu::Buffer,
    pub(super) unused_write: wgpu::Buffer,
    /// Per step slot (or chunk of an evaluation): [loss, correct].
    pub(super) results: wgpu::Buffer,
    /// What a window's results and layer norms are copied into to be read
    /// back, one for each of the ring's two windows (`window::WINDOW`).
    pub(super) window_readback: [wgpu::Buffer; 2],
    pub(super) steps: wgpu::Buffer,
    pub(super) step_stride: u64,
    pub(super) step_slots: usize,
    /// Clipping by norm (the two passes of the gradient norm run before
    /// the update), and what the update binds, piece by piece.
    pub(super) clip_norm: bool,
    pub(super) update: UpdateGroups,
    /// Per-layer norms every this many steps, and their results (per step
    /// slot, layer, gradient/weight).
    pub(super) norms_every: Option<u64>,
    pub(super) layer_norm_results: wgpu::Buffer,
    pub(super) resident: Option<Resident>,
    /// Uploads made; the current one's id (see `DeviceData`).
    pub(super) uploads: u64,
    /// The training data is larger than one binding may hold: batches are
    /// gathered on the host and written before each pass instead.
    pub(super) streamed: bool,
    /// The adapter's max_storage_buffer_binding_size, or less when
    /// `GpuOptions::max_binding_bytes` lowers it.
    pub(super) binding_limit: u64,
    pub(super) plans: HashMap<PassKey, Plan>,
    /// Optimizer steps taken (t of the last step).
    pub(super) t: u64,
    /// Optimizer state slots per parameter.
    pub(super) state_slots: usize,
    pub(super) uniform_align: u64,
    /// Checked before every submission of `train_steps`.
    pub(super) stop_flag: Option<StopFlag>,
    /// The submission of a call that returned before it ran (`update`,
    /// `restore`, an empty share's cleared gradients): the next call waits
    /// for it after its own first submission, so that at most two are in
    /// flight.
    pub(super) unwaited: Option<Submitted>,
    /// A profile being taken (`Backend::start_profile`): recording counts
    /// (and times) each dispatch while it is set.
    pub(super) profiler: RefCell<Option<Profiler>>,
}

impl std::fmt::Debug for GpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuBackend")
            .field("device", &self.name())
            .field("mlp", &self.mlp)
            .field("step", &self.t)
            .finish_non_exhaustive()
    }
}

impl GpuBackend {
    /// Destroys the device, as a driver reset or a removed GPU would: for
    /// the tests of what a lost device does to a run (every later call
    /// returns [`Error::Gpu`] saying so).
    #[cfg(feature = "harness")]
    #[doc(hidden)]
    pub fn lose_device(&self) {
        self.ctx.device.destroy();
    }

    /// The bind groups of a pass of shape `key`, built the first time it is
    /// asked for.
    pub(super) fn plan(&mut self, key: PassKey) -> &Plan {
        if !self.plans.contains_key(&key) {
            let plan = self.pass_resources().build_plan(key);
            self.plans.insert(key, plan);
        }
        &self.plans[&key]
    }

    /// What a pass's bind groups bind, lent to the plan that records them.
    fn pass_resources(&self) -> PassResources<'_> {
        PassResources {
            ctx: &self.ctx,
            kernels: &self.kernels,
            mlp: &self.mlp,
            loss: self.loss,
            layout: &self.layout,
            uniform_align: self.uniform_align,
            dropout: &self.dropout,
            dropout_seed: self.dropout_seed,
            params: &self.params,
            grads: &self.grads,
            x_batch: &self.x_batch,
            y_batch: &self.y_batch,
            z: &self.z,
            a: &self.a,
            dz: &self.dz,
            textures: self.textures.as_ref(),
            row_stats: &self.row_stats,
            results: &self.results,
            steps: &self.steps,
            unused_read: &self.unused_read,
            unused_write: &self.unused_write,
            resident: self.resident.as_ref(),
            sequence: self.sequence.as_ref(),
            ensemble: self.ensemble.as_ref(),
        }
    }

    /// Refuses a pass of `rows` rows of a batch of `batch` rows that
    /// BatchNorm cannot normalise as the CPU does (see
    /// [`Sequence::check_batch`]).
    pub(super) fn check_batch_norm(&self, rows: usize, batch: usize) -> Result<()> {
        match &self.sequence {
            Some(sequence) => sequence.check_batch(&self.mlp, rows, batch, self.capacity),
            None => Ok(()),
        }
    }

    /// Records copies of the parameters and optimizer state, to put back
    /// if a step diverges.
    pub(super) fn snapshot(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.copy_buffer_to_buffer(&self.params, 0, &self.params_before, 0, self.params.size());
        encoder.copy_buffer_to_buffer(&self.state, 0, &self.state_before, 0, self.state.size());
        if let Some(s) = &self.sequence {
            encoder.copy_buffer_to_buffer(&s.running, 0, &s.running_before, 0, s.running.size());
        }
    }

    /// Puts back the parameters, optimizer state and step count of the
    /// last snapshot (taken at step `t`).
    pub(super) fn restore(&mut self, t: u64) -> Result<()> {
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(&self.params_before, 0, &self.params, 0, self.params.size());
        encoder.copy_buffer_to_buffer(&self.state_before, 0, &self.state, 0, self.state.size());
        if let Some(s) = &self.sequence {
            encoder.copy_buffer_to_buffer(&s.running_before, 0, &s.running, 0, s.running.size());
        }
        let submitted = self.ctx.submit(encoder.finish());
        self.leave_unwaited(submitted)?;
        self.t = t;
        self.ctx.check()
    }

    /// BatchNorm's running statistics, read back ([`Backend::buffers`]).
    pub async fn read_buffers(&mut self) -> Result<Vec<f32>> {
        let Some(s) = self.sequence.as_ref().filter(|_| self.mlp.has_batch_norm()) else {
            return Ok(Vec::new());
        };
        let bytes = self
            .ctx
            .read_async(&s.running, 0, s.running_len() * 4)
            .await?;
        let values: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        Ok(s.unpack_buffers(&self.mlp, &values))
    }

    /// Keeps `submitted`, which the call returns before it runs, for the
    /// next call to wait for ([`unwaited`](Self::unwaited)). One kept
    /// already (two updates in a row) is waited for now natively; the
    /// browser cannot block, and there it may run beside the next call's
    /// first two.
    fn leave_unwaited(&mut self, submitted: Submitted) -> Result<()> {
        if let Some(previous) = self.unwaited.replace(submitted) {
            #[cfg(not(target_arch = "wasm32"))]
            block_on(self.ctx.finished(&previous))?;
            #[cfg(target_arch = "wasm32")]
            drop(previous);
        }
        Ok(())
    }

    /// The mean loss and number correct of an evaluation chunk, from the
    /// read-back buffer `slot` its submission `done` copied them into.
    async fn read_chunk(&self, done: &Submitted, slot: usize) -> Result<(f64, f64)> {
        let bytes = self
            .ctx
            .read_mapped(&self.window_readback[slot], 8, done)
            .await?;
        let values: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        Ok((values[0] as f64, values[1] as f64))
    }

    /// Writes `rows` of `data` (gathered on the host) into the batch
    /// buffers.
    pub(super) fn write_rows(&self, data: &Dataset, rows: &[u32], scratch: &mut Scratch) {
        let Scratch { x, values, labels } = scratch;
        data.gather(rows, x, values, labels);
        let queue = &self.ctx.queue;
        queue.write_buffer(&self.x_batch, 0, bytemuck::cast_slice(x));
        match data.targets() {
            Targets::Classes(_) => {
                queue.write_buffer(&self.y_batch, 0, bytemuck::cast_slice(labels))
            }
            Targets::Values { .. } => {
                queue.write_buffer(&self.y_batch, 0, bytemuck::cast_slice(values))
            }
        }
    }

    pub(super) fn write_batch(&self, data: &Dataset, start: usize, end: usize) {
        let f = data.features();
        let queue = &self.ctx.queue;
        queue.write_buffer(
            &self.x_batch,
            0,
            bytemuck::cast_slice(&data.x()[start * f..end * f]),
        );
        match data.targets() {
            Targets::Classes(labels) => {
                queue.write_buffer(&self.y_batch, 0, bytemuck::cast_slice(&labels[start..end]))
            }
            Targets::Values { values, width } => queue.write_buffer(
                &self.y_batch,
                0,
                bytemuck::cast_slice(&values[start * width..end * width]),
            ),
        }
    }
}

impl Backend for GpuBackend {
    fn name(&self) -> String {
        let s = self.ctx.summary();
        format!("gpu: {} ({})", s.name, s.backend)
    }

    fn parameters(&mut self) -> Result<Vec<f32>> {
        block_on(self.parameters_async())
    }

    fn parameters_async(&mut self) -> LocalFuture<'_, Result<Vec<f32>>> {
        Box::pin(async move {
            let bytes = self
                .ctx
                .read_async(&self.params, 0, self.layout.len * 4)
                .await?;
            // Copied, not cast: a byte vector need not be aligned for f32.
            let values: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
            Ok(self.layout.unpack(&self.mlp, &values))
        })
    }

    fn set_parameters(&mut self, params: &[f32]) -> Result<()> {
        checks::length(
            "parameters of the network",
            self.mlp.parameter_count(),
            params.len(),
        )?;
        self.ctx.queue.write_buffer(
            &self.params,
            0,
            bytemuck::cast_slice(&self.layout.pack(&self.mlp, params)),
        );
        self.ctx.check()
    }

    fn optimizer_state(&mut self) -> Result<(Vec<f32>, u64)> {
        block_on(self.optimizer_state_async())
    }

    fn optimizer_state_async(&mut self) -> LocalFuture<'_, Result<(Vec<f32>, u64)>> {
        Box::pin(async move {
            let padded = self.layout.len;
            let bytes = self
                .ctx
                .read_async(&self.state, 0, self.state_slots as u64 * padded * 4)
                .await?;
            // Copied: with no state slots (plain SGD) the bytes are an
            // empty Vec whose pointer is not aligned for f32.
            let all: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
            let mut state = Vec::with_capacity(self.state_slots * self.mlp.parameter_count());
            for slot in 0..self.state_slots {
                state.extend(self.layout.unpack(
                    &self.mlp,
                    &all[slot * padded as usize..(slot + 1) * padded as usize],
                ));
            }
            Ok((state, self.t))
        })
    }

    fn buffers(&mut self) -> Result<Vec<f32>> {
        if !self.mlp.has_batch_norm() {
            return Ok(Vec::new());
        }
        block_on(self.read_buffers())
    }

    fn buffers_async(&mut self) -> LocalFuture<'_, Result<Vec<f32>>> {
        Box::pin(self.read_buffers())
    }

    fn set_buffers(&mut self, buffers: &[f32]) -> Result<()> {
        checks::length(
            "buffers of the network (batch normalisations' running statistics)",
            self.mlp.buffer_count(),
            buffers.len(),
        )?;
        if let Some(s) = &self.sequence
            && self.mlp.has_batch_norm()
        {
            let padded = s.pack_buffers(&self.mlp, buffers);
            self.ctx
                .queue
                .write_buffer(&s.running, 0, bytemuck::cast_slice(&padded));
        }
        self.ctx.check()
    }

    fn set_optimizer_state(&mut self, state: &[f32], step: u64) -> Result<()> {
        let n = self.mlp.parameter_count();
        checks::length("optimizer state", self.state_slots * n, state.len())?;
        let mut padded = Vec::with_capacity(self.state_slots * self.layout.len as usize);
        for slot in 0..self.state_slots {
            padded.extend(
                self.layout
                    .pack(&self.mlp, &state[slot * n..(slot + 1) * n]),
            );
        }
        if !padded.is_empty() {
            self.ctx
                .queue
                .write_buffer(&self.state, 0, bytemuck::cast_slice(&padded));
        }
        self.t = step;
        self.ctx.check()
    }

    fn upload<'a>(&mut self, train: &'a Dataset) -> Result<DeviceData<'a>> {
        refuse_weights(train)?;
        let device = &self.ctx.device;
        self.plans.clear();
        self.resident = None;
        self.uploads += 1;
        let handle = DeviceData::new(self.uploads, train);
        let target_words = train.rows() * train.target_width();
        let largest = (train.x().len().max(target_words) * 4) as u64;
        self.streamed = largest > self.binding_limit;
        if self.streamed {
            log::info!(
                "the training data ({largest} bytes in its largest tensor) exceeds one GPU binding ({} bytes): streaming batches from host memory",
                self.binding_limit
            );
            self.ctx.check()?;
            return Ok(handle);
        }
        let (targets, target_width) = match train.targets() {
            Targets::Classes(labels) => (storage_init(device, "targets", labels), 1),
            Targets::Values { values, width } => (storage_init(device, "targets", values), *width),
        };
        self.resident = Some(Resident {
            x: storage_init(device, "inputs", train.x()),
            targets,
            perm: storage(device, "permutation", train.rows() as u64),
            features: train.features(),
            target_width,
        });
        self.ctx.check()?;
        Ok(handle)
    }

    fn forward_backward(&mut self, data: &DeviceData<'_>, share: BatchShare<'_>) -> Result<f64> {
        block_on(self.forward_backward_async(data, share))
    }

    fn forward_backward_async<'a>(
        &'a mut self,
        data: &'a DeviceData<'a>,
        share: BatchShare<'a>,
    ) -> LocalFuture<'a, Result<f64>> {
        Box::pin(async move {
            data.check(Some(self.uploads))?;
            share.check()?;
            // An empty share too: every rank of a batch normalisation
            // shared by ranks refuses it at the same step.
            self.check_batch_norm(share.rows.len(), share.batch_rows)?;
            refuse_shared_tabm(&self.mlp, share.rows.len(), share.batch_rows)?;
            if share.rows.is_empty() {
                let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
                encoder.clear_buffer(&self.grads, 0, None);
                let submitted = self.ctx.submit(encoder.finish());
                self.leave_unwaited(submitted)?;
                self.ctx.check()?;
                return Ok(0.0);
            }
            // The share's rows are gathered on the host and written pass by
            // pass: a step in phases is one submission per pass anyway.
            self.write_steps(
                0,
                &[StepUniform::new(&self.rule, self.t + 1, self.rule.lr, 0, 0)],
            );
            let keys: Vec<PassKey> = PassKey::training(
                share.rows.len(),
                share.batch_rows,
                share.offset,
                self.capacity,
            )
            .collect();
            for key in &keys {
                self.plan(*key);
            }
            let mut scratch = Scratch::default();
            let at = StepAt {
                slot: 0,
                t: self.t + 1,
            };
            // At most two passes in flight: the rows waiting to be copied
            // stay one or two passes' worth.
            let mut in_flight = InFlight::after(self.unwaited.take());
            for key in &keys {
                let first = key.offset - share.offset;
                self.write_rows(
                    data.dataset(),
                    &share.rows[first..first + key.rows],
                    &mut scratch,
                );
                let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
                {
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    self.mark_pass_start(&mut pass);
                    self.record(&mut pass, &self.plans[key], at, false, true);
                }
                self.resolve_marks(&mut encoder);
                let submitted = self.ctx.submit(encoder.finish());
                in_flight.push(&self.ctx, submitted).await?;
            }
            Ok(self.read_results_async(1).await?[0] as f64)
        })
    }

    fn gradients(&mut self) -> Result<Vec<f32>> {
        block_on(self.gradients_async())
    }

    fn gradients_async(&mut self) -> LocalFuture<'_, Result<Vec<f32>>> {
        Box::pin(async move {
            let bytes = self
                .ctx
                .read_async(&self.grads, 0, self.layout.len * 4)
                .await?;
            // Copied, not cast: a byte vector need not be aligned for f32.
            let values: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
            Ok(self.layout.unpack(&self.mlp, &values))
        })
    }

    fn set_gradients(&mut self, grads: &[f32]) -> Result<()> {
        if grads.len() != self.mlp.parameter_count() {
            return Err(Error::Shape {
                what: "gradients of the network".into(),
                expected: self.mlp.parameter_count(),
                got: grads.len(),
            });
        }
        let padded = self.layout.pack(&self.mlp, grads);
        self.ctx
            .queue
            .write_buffer(&self.grads, 0, bytemuck::cast_slice(&padded));
        self.ctx.check()
    }

    fn update(&mut self, lr: f64) -> Result<()> {
        self.write_steps(0, &[StepUniform::new(&self.rule, self.t + 1, lr, 0, 0)]);
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.mark_pass_start(&mut pass);
            let at = StepAt {
                slot: 0,
                t: self.t + 1,
            };
            self.record_update(&mut pass, at, false);
        }
        self.resolve_marks(&mut encoder);
        let submitted = self.ctx.submit(encoder.finish());
        self.leave_unwaited(submitted)?;
        self.t += 1;
        self.ctx.check()
    }

    fn start_profile(&mut self) -> Result<bool> {
        *self.profiler.get_mut() = Some(Profiler::new(&self.ctx.device));
        Ok(true)
    }

    fn finish_profile(&mut self) -> Result<Option<StepProfile>> {
        block_on(self.finish_profile_async())
    }

    fn finish_profile_async(&mut self) -> LocalFuture<'_, Result<Option<StepProfile>>> {
        Box::pin(async move {
            let Some(mut profiler) = self.profiler.get_mut().take() else {
                return Ok(None);
            };
            let ticks: Option<Vec<u64>> = match profiler.marks() {
                Some(marks) => {
                    let (buffer, bytes) = marks.ticks();
                    Some(if bytes == 0 {
                        Vec::new()
                    } else {
                        bytemuck::pod_collect_to_vec(&self.ctx.read_async(buffer, 0, bytes).await?)
                    })
                }
                None => None,
            };
            let period = self.ctx.queue.get_timestamp_period();
            let ticks = ticks.as_deref().map(|ticks| (ticks, period));
            Ok(Some(profiler.profile(self.name(), ticks)))
        })
    }

    fn train_steps(
        &mut self,
        data: &DeviceData<'_>,
        order: &[u32],
        batch_size: usize,
        max_steps: u64,
        lr: f64,
    ) -> Result<StepsReport> {
        block_on(self.train_steps_async(data, order, batch_size, max_steps, lr))
    }

    fn train_steps_async<'a>(
        &'a mut self,
        data: &'a DeviceData<'a>,
        order: &'a [u32],
        batch_size: usize,
        max_steps: u64,
        lr: f64,
    ) -> LocalFuture<'a, Result<StepsReport>> {
        Box::pin(async move {
            data.check(Some(self.uploads))?;
            checks::steps(order, data.dataset().rows(), batch_size)?;
            if let Some(resident) = &self.resident {
                self.ctx
                    .queue
                    .write_buffer(&resident.perm, 0, bytemuck::cast_slice(order));
            }
            // `order` may be the rest of an epoch (Trainer::train_steps).
            let rows = order.len();
            let batches: Vec<Batch> = (0..rows)
                .step_by(batch_size)
                .map(|start| (start, (start + batch_size).min(rows)))
                .take(max_steps.try_into().unwrap_or(usize::MAX))
                .collect();
            for &(start, end) in &batches {
                self.check_batch_norm(end - start, end - start)?;
                for key in PassKey::training(end - start, end - start, 0, self.capacity) {
                    self.plan(key);
                }
            }
            let first_t = self.t;
            let run = self
                .run_windows(data.dataset(), order, &batches, lr)
                .await?;
            self.t += run.submitted as u64;
            if let Some((bad, loss)) = run.diverged {
                // The steps after the snapshot ran; put back the state from
                // before them and run the good ones again, so that what is
                // kept is what the CPU keeps: everything as it was before
                // the bad step.
                self.restore(first_t)?;
                let mut kept = StepsReport::default();
                if bad > 0 {
                    // The good steps run again whole, whatever the stop flag says.
                    let stop_flag = self.stop_flag.take();
                    let rerun = self
                        .train_steps_async(data, order, batch_size, bad as u64, lr)
                        .await;
                    self.stop_flag = stop_flag;
                    kept = rerun?;
                }
                return Err(Error::Diverged {
                    step: first_t + bad as u64 + 1,
                    loss: loss as f64,
                    kept: Kept {
                        steps: first_t + bad as u64,
                        epoch: 0,
                        rows_done: kept.rows,
                        loss_sum: kept.loss_sum,
                    },
                });
            }
            Ok(run.report)
        })
    }

    fn evaluate(&mut self, data: &Dataset) -> Result<(f64, Option<usize>)> {
        block_on(self.evaluate_async(data))
    }

    fn evaluate_async<'a>(
        &'a mut self,
        data: &'a Dataset,
    ) -> LocalFuture<'a, Result<(f64, Option<usize>)>> {
        Box::pin(async move {
            refuse_weights(data)?;
            let chunks: Vec<(usize, usize)> = (0..data.rows())
                .step_by(self.capacity)
                .map(|start| (start, (start + self.capacity).min(data.rows())))
                .collect();
            // Chunk by chunk, at most two in flight, each one's loss and
            // count read back after the next is submitted: what waits to be
            // copied to the device stays one or two chunks' rows.
            let (mut loss_sum, mut correct) = (0.0, 0.0);
            let mut pending: Option<(usize, Submitted)> = None;
            let mut in_flight = InFlight::after(self.unwaited.take());
            for (c, &(start, end)) in chunks.iter().enumerate() {
                let slot = c % 2;
                let key = PassKey::whole(end - start);
                self.plan(key);
                let step = StepUniform {
                    slot: slot as u32,
                    ..Default::default()
                };
                self.write_steps(slot, &[step]);
                self.write_batch(data, start, end);
                let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
                {
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    let at = StepAt {
                        slot,
                        t: self.t + 1,
                    };
                    self.record(&mut pass, &self.plans[&key], at, false, false);
                }
                let readback = &self.window_readback[slot];
                encoder.copy_buffer_to_buffer(&self.results, slot as u64 * 8, readback, 0, 8);
                let submitted = self.ctx.submit(encoder.finish());
                in_flight.push(&self.ctx, submitted.clone()).await?;
                if let Some((done, previous)) = pending.replace((c, submitted)) {
                    let (loss, right) = self.read_chunk(&previous, done % 2).await?;
                    let (start, end) = chunks[done];
                    loss_sum += loss * (end - start) as f64;
                    correct += right;
                }
            }
            if let Some((done, last)) = pending {
                let (loss, right) = self.read_chunk(&last, done % 2).await?;
                let (start, end) = chunks[done];
                loss_sum += loss * (end - start) as f64;
                correct += right;
            }
            Ok((
                loss_sum,
                self.loss
                    .is_classification()
                    .then_some(correct.round() as usize),
            ))
        })
    }

    fn evaluation_rows(&self) -> Option<usize> {
        // Evaluation and prediction go a pass of `capacity` rows at a time.
        Some(self.capacity)
    }

    fn memory_bytes(&self) -> u64 {
        let mut buffers = vec![
            &self.params,
            &self.params_before,
            &self.grads,
            &self.state,
            &self.state_before,
            &self.x_batch,
            &self.y_batch,
            &self.row_stats,
            &self.results,
            &self.steps,
        ];
        buffers.extend(self.z.iter().chain(&self.a).chain(&self.dz));
        if let Some(d) = &self.resident {
            buffers.extend([&d.x, &d.targets, &d.perm]);
        }
        if let Some(s) = &self.sequence {
            buffers.extend(s.buffers());
        }
        if let Some(e) = &self.ensemble {
            buffers.extend(e.buffers());
        }
        buffers.iter().map(|b| b.size()).sum::<u64>()
            + self.textures.as_ref().map_or(0, Textures::bytes)
    }

    fn predict(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        block_on(self.predict_async(x))
    }

    fn predict_async<'a>(&'a mut self, x: &'a [f32]) -> LocalFuture<'a, Result<Vec<f32>>> {
        Box::pin(async move {
            let inputs = self.mlp.inputs();
            checks::rows_of("inputs to predict", inputs, x.len())?;
            let outputs = self.mlp.outputs();
            let rows = x.len() / inputs;
            self.write_steps(0, &[StepUniform::default()]);
            // Chunk by chunk, each read back before the next: no buffer of all
            // the outputs on the device, whatever the number of rows.
            let last = self.mlp.layers().len() - 1;
            let mut out = Vec::with_capacity(rows * outputs);
            for start in (0..rows).step_by(self.capacity) {
                let end = (start + self.capacity).min(rows);
                self.plan(PassKey::whole(end - start));
                self.ctx.queue.write_buffer(
                    &self.x_batch,
                    0,
                    bytemuck::cast_slice(&x[start * inputs..end * inputs]),
                );
                let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
                {
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    let plan = &self.plans[&PassKey::whole(end - start)];
                    let at = StepAt {
                        slot: 0,
                        t: self.t + 1,
                    };
                    self.record_forward(&mut pass, plan, at);
                }
                let submitted = self.ctx.submit(encoder.finish());
                // Its read-back is the second submission in flight.
                InFlight::after(self.unwaited.take())
                    .push(&self.ctx, submitted)
                    .await?;
                // A TabM network's prediction is the ensemble's mean.
                let output = self.ensemble.as_ref().map_or(&self.a[last], |e| &e.mean);
                let bytes = self
                    .ctx
                    .read_async(output, 0, ((end - start) * outputs * 4) as u64)
                    .await?;
                out.extend(bytemuck::pod_collect_to_vec::<u8, f32>(&bytes));
            }
            Ok(out)
        })
    }
}

/// TabM over a batch shared by ranks is not built on the GPU (its passes
/// are not checked against the CPU's): refused by name, at every rank's
/// same step (an empty share too).
fn refuse_shared_tabm(mlp: &crate::model::Mlp, rows: usize, batch: usize) -> Result<()> {
    match mlp.tabm_spec() {
        Some(spec) if rows < batch => Err(crate::error::Error::Config(format!(
            "TabM ({} members, {}) over a batch shared by ranks runs on the CPU backend only, so \
             far (device cpu): this rank holds {rows} of the batch's {batch} rows",
            spec.k, spec.arch
        ))),
        _ => Ok(()),
    }
}

/// Sample weights are the CPU backend's so far: a weighted data set on
/// the GPU is refused by name rather than trained unweighted.
fn refuse_weights(data: &Dataset) -> Result<()> {
    match data.weights() {
        Some(_) => Err(crate::error::Error::Config(
            "sample weights train on the CPU backend only for now (device cpu); the GPU's \
             loss kernel does not read them yet"
                .into(),
        )),
        None => Ok(()),
    }
}
