//! Training on the GPU: buffers allocated once, the data set resident, many
//! steps recorded into one submission, one read-back per epoch.

use super::context::GpuContext;
use super::pipelines::Kernels;
use super::plan::{PassKey, PassResources, Plan};
use super::profile::Marks;
use super::resources::{ParamLayout, Resident, Scratch, Textures, storage, storage_init};
use super::uniforms::StepUniform;
use crate::backend::{
    Backend, BatchShare, DeviceData, LayerNorms, LocalFuture, StepProfile, StepsReport,
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

/// Steps recorded into one command buffer before it is submitted.
const STEPS_PER_SUBMIT: usize = 64;

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
    /// Stand-ins for bindings a kernel variant does not use.
    pub(super) unused_read: wgpu::Buffer,
    pub(super) unused_write: wgpu::Buffer,
    /// Per step of an epoch (or chunk of an evaluation): [loss, correct].
    pub(super) results: wgpu::Buffer,
    pub(super) steps: wgpu::Buffer,
    pub(super) step_stride: u64,
    pub(super) step_slots: usize,
    pub(super) optimizer_group: wgpu::BindGroup,
    pub(super) _optimizer_uniform: wgpu::Buffer,
    /// Clipping by norm: the two passes' bind groups (grads → partial sums →
    /// norm), their buffers, and whether to run them.
    pub(super) clip_norm: bool,
    pub(super) norm_groups: [wgpu::BindGroup; 2],
    pub(super) norm: wgpu::Buffer,
    pub(super) _norm_buffers: [wgpu::Buffer; 3],
    /// Per-layer norms every this many steps: their results (per step slot,
    /// layer, gradient/weight), the layer ranges, and the bind group.
    pub(super) norms_every: Option<u64>,
    pub(super) layer_norm_results: wgpu::Buffer,
    pub(super) layer_ranges: wgpu::Buffer,
    pub(super) layer_norms_uniform: wgpu::Buffer,
    pub(super) layer_norms_group: wgpu::BindGroup,
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
    /// The timestamps of a profile being taken (`Backend::start_profile`):
    /// recording marks each dispatch while it is set.
    pub(super) marks: RefCell<Option<Marks>>,
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
        }
    }

    /// Makes room for `slots` per-step parameter blocks and results.
    pub(super) fn ensure_step_slots(&mut self, slots: usize) {
        if slots <= self.step_slots {
            return;
        }
        let slots = slots.next_power_of_two();
        let device = &self.ctx.device;
        self.steps = Self::step_buffer(device, self.step_stride, slots);
        self.results = storage(device, "results", 2 * slots as u64);
        self.step_slots = slots;
        let layers = self.mlp.layers().len();
        self.layer_norm_results = storage(device, "layer norms", (slots * layers * 2) as u64);
        self.layer_norms_group = Self::layer_norms_group(
            device,
            &self.kernels.layer_norms,
            [
                &self.layer_norms_uniform,
                &self.grads,
                &self.layer_norm_results,
                &self.steps,
                &self.params,
                &self.layer_ranges,
            ],
        );
        self.optimizer_group = Self::optimizer_group(
            device,
            &self.kernels.optimizer,
            &self._optimizer_uniform,
            &self.steps,
            [&self.params, &self.grads, &self.state, &self.norm],
        );
        self.plans.clear();
    }

    /// Records copies of the parameters and optimizer state, to put back
    /// if a step diverges.
    pub(super) fn snapshot(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.copy_buffer_to_buffer(&self.params, 0, &self.params_before, 0, self.params.size());
        encoder.copy_buffer_to_buffer(&self.state, 0, &self.state_before, 0, self.state.size());
    }

    /// Puts back the parameters, optimizer state and step count of the
    /// last snapshot (taken at step `t`).
    pub(super) fn restore(&mut self, t: u64) -> Result<()> {
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(&self.params_before, 0, &self.params, 0, self.params.size());
        encoder.copy_buffer_to_buffer(&self.state_before, 0, &self.state, 0, self.state.size());
        self.ctx.queue.submit([encoder.finish()]);
        self.t = t;
        self.ctx.check()
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
            Ok(self.layout.unpack(&self.mlp, bytemuck::cast_slice(&bytes)))
        })
    }

    fn set_parameters(&mut self, params: &[f32]) -> Result<()> {
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

    fn set_optimizer_state(&mut self, state: &[f32], step: u64) -> Result<()> {
        let n = self.mlp.parameter_count();
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
            if share.rows.is_empty() {
                let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
                encoder.clear_buffer(&self.grads, 0, None);
                self.ctx.queue.submit([encoder.finish()]);
                self.ctx.check()?;
                return Ok(0.0);
            }
            // The share's rows are gathered on the host and written pass by
            // pass: a step in phases is one submission per pass anyway.
            self.ensure_step_slots(1);
            self.write_steps(&[StepUniform::new(&self.rule, self.t + 1, self.rule.lr, 0, 0)]);
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
                    self.record(&mut pass, &self.plans[key], 0, false, true);
                }
                self.resolve_marks(&mut encoder);
                self.ctx.queue.submit([encoder.finish()]);
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
            Ok(self.layout.unpack(&self.mlp, bytemuck::cast_slice(&bytes)))
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
        self.ensure_step_slots(1);
        self.write_steps(&[StepUniform::new(&self.rule, self.t + 1, lr, 0, 0)]);
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.mark_pass_start(&mut pass);
            self.record_update(&mut pass, 0, false);
        }
        self.resolve_marks(&mut encoder);
        self.ctx.queue.submit([encoder.finish()]);
        self.t += 1;
        self.ctx.check()
    }

    fn start_profile(&mut self) -> Result<bool> {
        let marks = Marks::new(&self.ctx.device);
        let timed = marks.is_some();
        *self.marks.get_mut() = marks;
        Ok(timed)
    }

    fn finish_profile(&mut self) -> Result<Option<StepProfile>> {
        block_on(self.finish_profile_async())
    }

    fn finish_profile_async(&mut self) -> LocalFuture<'_, Result<Option<StepProfile>>> {
        Box::pin(async move {
            let Some(marks) = self.marks.get_mut().take() else {
                return Ok(None);
            };
            let (buffer, bytes) = marks.ticks();
            let ticks: Vec<u64> = if bytes == 0 {
                Vec::new()
            } else {
                bytemuck::pod_collect_to_vec(&self.ctx.read_async(buffer, 0, bytes).await?)
            };
            let period = self.ctx.queue.get_timestamp_period();
            Ok(Some(marks.profile(self.name(), &ticks, period)))
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
            if let Some(resident) = &self.resident {
                self.ctx
                    .queue
                    .write_buffer(&resident.perm, 0, bytemuck::cast_slice(order));
            }
            // `order` may be the rest of an epoch (Trainer::train_steps).
            let rows = order.len();
            let batches: Vec<(usize, usize)> = (0..rows)
                .step_by(batch_size)
                .map(|start| (start, (start + batch_size).min(rows)))
                .take(max_steps.try_into().unwrap_or(usize::MAX))
                .collect();
            self.ensure_step_slots(batches.len());
            let first_t = self.t;
            let steps: Vec<StepUniform> = batches
                .iter()
                .enumerate()
                .map(|(s, &(start, _))| {
                    StepUniform::new(
                        &self.rule,
                        first_t + s as u64 + 1,
                        lr,
                        start as u32,
                        s as u32,
                    )
                })
                .collect();
            self.write_steps(&steps);
            let passes = |&(start, end): &(usize, usize), capacity| {
                PassKey::training(end - start, end - start, 0, capacity)
            };
            for batch in &batches {
                for key in passes(batch, self.capacity) {
                    self.plan(key);
                }
            }
            // Steps submitted: all of them unless the stop flag, checked before
            // each submission, ends it early.
            let mut submitted = 0;
            if self.streamed {
                submitted = self.stream_epoch(data.dataset(), order, &batches)?;
            }
            for (chunk_index, chunk) in batches
                .chunks(STEPS_PER_SUBMIT)
                .enumerate()
                .filter(|_| !self.streamed)
            {
                if self.stop_flag.as_ref().is_some_and(StopFlag::is_requested) {
                    break;
                }
                let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
                if chunk_index == 0 {
                    self.snapshot(&mut encoder);
                }
                {
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    self.mark_pass_start(&mut pass);
                    for (i, batch) in chunk.iter().enumerate() {
                        let slot = chunk_index * STEPS_PER_SUBMIT + i;
                        for key in passes(batch, self.capacity) {
                            self.record(&mut pass, &self.plans[&key], slot, true, true);
                        }
                        self.record_update(&mut pass, slot, self.samples_norms(slot));
                    }
                }
                self.resolve_marks(&mut encoder);
                self.ctx.queue.submit([encoder.finish()]);
                submitted += chunk.len();
            }
            let stopped = submitted < batches.len();
            let batches = &batches[..submitted];
            if batches.is_empty() {
                return Ok(StepsReport {
                    stopped,
                    ..StepsReport::default()
                });
            }
            self.t += batches.len() as u64;
            let results = self.read_results_async(batches.len()).await?;
            if let Some(bad) = (0..batches.len()).find(|&s| !results[2 * s].is_finite()) {
                // Every step ran; put back the state from before them and run
                // the good ones again, so that what is kept is what the CPU
                // keeps: everything as it was before the bad step.
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
                    loss: results[2 * bad] as f64,
                    kept: Kept {
                        steps: first_t + bad as u64,
                        epoch: 0,
                        rows_done: kept.rows,
                        loss_sum: kept.loss_sum,
                    },
                });
            }
            let mut epoch = StepsReport {
                stopped,
                ..StepsReport::default()
            };
            if (0..batches.len()).any(|s| self.samples_norms_at(first_t, s)) {
                let layers = self.mlp.layers().len();
                let bytes = self
                    .ctx
                    .read_async(
                        &self.layer_norm_results,
                        0,
                        (batches.len() * layers * 2 * 4) as u64,
                    )
                    .await?;
                let norms: &[f32] = bytemuck::cast_slice(&bytes);
                for s in (0..batches.len()).filter(|&s| self.samples_norms_at(first_t, s)) {
                    for layer in 0..layers {
                        let at = (s * layers + layer) * 2;
                        epoch.norms.push(LayerNorms {
                            step: first_t + s as u64 + 1,
                            layer,
                            grad_norm: norms[at] as f64,
                            weight_norm: norms[at + 1] as f64,
                        });
                    }
                }
            }
            for (s, &(start, end)) in batches.iter().enumerate() {
                epoch.loss_sum += results[2 * s] as f64 * (end - start) as f64;
                epoch.rows += end - start;
                epoch.steps += 1;
            }
            Ok(epoch)
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
            let chunks: Vec<(usize, usize)> = (0..data.rows())
                .step_by(self.capacity)
                .map(|start| (start, (start + self.capacity).min(data.rows())))
                .collect();
            self.ensure_step_slots(chunks.len());
            let steps: Vec<StepUniform> = (0..chunks.len())
                .map(|s| StepUniform {
                    slot: s as u32,
                    ..Default::default()
                })
                .collect();
            self.write_steps(&steps);
            for (slot, &(start, end)) in chunks.iter().enumerate() {
                self.plan(PassKey::whole(end - start));
                self.write_batch(data, start, end);
                let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
                {
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    self.record(
                        &mut pass,
                        &self.plans[&PassKey::whole(end - start)],
                        slot,
                        false,
                        false,
                    );
                }
                self.ctx.queue.submit([encoder.finish()]);
            }
            let results = self.read_results_async(chunks.len()).await?;
            let mut loss_sum = 0.0;
            let mut correct = 0.0;
            for (s, &(start, end)) in chunks.iter().enumerate() {
                loss_sum += results[2 * s] as f64 * (end - start) as f64;
                correct += results[2 * s + 1] as f64;
            }
            Ok((
                loss_sum,
                self.loss
                    .is_classification()
                    .then_some(correct.round() as usize),
            ))
        })
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
        buffers.iter().map(|b| b.size()).sum::<u64>()
            + self.textures.as_ref().map_or(0, Textures::bytes)
    }

    fn predict(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        block_on(self.predict_async(x))
    }

    fn predict_async<'a>(&'a mut self, x: &'a [f32]) -> LocalFuture<'a, Result<Vec<f32>>> {
        Box::pin(async move {
            let inputs = self.mlp.inputs();
            let outputs = self.mlp.outputs();
            let rows = x.len() / inputs;
            self.ensure_step_slots(1);
            self.write_steps(&[StepUniform::default()]);
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
                    self.record_forward(&mut pass, plan, 0);
                }
                self.ctx.queue.submit([encoder.finish()]);
                let bytes = self
                    .ctx
                    .read_async(&self.a[last], 0, ((end - start) * outputs * 4) as u64)
                    .await?;
                out.extend_from_slice(bytemuck::cast_slice(&bytes));
            }
            Ok(out)
        })
    }
}
