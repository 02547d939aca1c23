//! Recording a pass's dispatches into a compute pass: the forward pass, the
//! loss, the backward pass and the update, in the order of the math.

use super::backend::GpuBackend;
use super::dispatch::grid;
use super::pipelines::{Kernels, NORM_GROUPS};
use super::plan::{PassKey, Plan, Product};
use super::profile::{OPTIMIZER, Work};
use super::resources::{Pack, Scratch};
use super::uniforms::StepUniform;
use crate::data::Dataset;
use crate::error::Result;
use crate::stop::StopFlag;

impl GpuBackend {
    /// Records the forward pass, the loss, and (with `train`) the backward
    /// pass and the update, for the step whose parameters sit in slot `slot`.
    pub(crate) fn record(
        &self,
        pass: &mut wgpu::ComputePass,
        plan: &Plan,
        slot: usize,
        gather: bool,
        train: bool,
    ) {
        let k = &self.kernels;
        let max = self.ctx.limits.max_compute_workgroups_per_dimension;
        let step_offset = (slot as u64 * self.step_stride) as u32;
        let t = self.t + slot as u64 + 1;
        let rows = plan.rows;
        let layers = self.mlp.layers();
        if gather && let (Some(group), Some(d)) = (&plan.gather, &self.resident) {
            pass.set_pipeline(&k.gather.pipeline);
            pass.set_bind_group(0, group, &[step_offset]);
            let groups = grid((rows * (d.features + d.target_width)) as u64, 256, max);
            self.dispatch(pass, t, Work::of("gather batch"), groups);
        }
        self.record_forward(pass, plan, slot);
        let (loss, groups) = k.loss_for(rows, self.mlp.outputs(), max);
        pass.set_pipeline(&loss.pipeline);
        pass.set_bind_group(0, &plan.loss, &[]);
        self.dispatch(pass, t, Work::of("loss"), groups);
        pass.set_pipeline(&k.loss_sum.pipeline);
        pass.set_bind_group(0, &plan.loss_sum, &[step_offset]);
        self.dispatch(pass, t, Work::of("loss sum"), (1, 1));
        if !train {
            return;
        }
        let packs = plan.packs.as_ref();
        if let Some(p) = packs {
            let last = layers.len() - 1;
            self.pack(pass, t, Work::layer("pack dZ", last), &p.dz[last]);
        }
        for (l, layer) in layers.iter().enumerate().rev() {
            let (matmul, groups) = k.matmul(layer.outputs, layer.inputs);
            let weight_grad = matmul.weight_grad(&self.ctx.device, plan.accumulate);
            pass.set_pipeline(&weight_grad.pipeline);
            let work = Work::layer("weight grad", l);
            self.dispatch_chunks(pass, t, work, &plan.weight_grad[l], step_offset, groups);
            pass.set_pipeline(&k.column_sums.pipeline);
            pass.set_bind_group(0, &plan.bias_grad[l], &[]);
            let groups = Kernels::column_sums_groups(layer.outputs, max);
            self.dispatch(pass, t, Work::layer("bias grad", l), groups);
            if let Some(chunks) = &plan.input_grad[l] {
                let (matmul, groups) = k.matmul(rows, layer.inputs);
                pass.set_pipeline(&matmul.input_grad.pipeline);
                let work = Work::layer("input grad", l);
                self.dispatch_chunks(pass, t, work, chunks, step_offset, groups);
                if let Some(p) = packs {
                    self.pack(pass, t, Work::layer("pack dZ", l - 1), &p.dz[l - 1]);
                }
            }
        }
    }

    /// Records the forward pass of a plan from its input batch to the last
    /// layer's output (with the texture matmul: packing the weights, the
    /// input and each layer's output for the next).
    pub(crate) fn record_forward(&self, pass: &mut wgpu::ComputePass, plan: &Plan, slot: usize) {
        let k = &self.kernels;
        let step_offset = (slot as u64 * self.step_stride) as u32;
        let t = self.t + slot as u64 + 1;
        let layers = self.mlp.layers();
        if let (Some(textures), Some(p)) = (&self.textures, &plan.packs) {
            for (l, pack) in textures.weight_packs.iter().enumerate() {
                self.pack(pass, t, Work::layer("pack weights", l), pack);
            }
            self.pack(pass, t, Work::of("pack input"), &p.x);
        }
        for (l, layer) in layers.iter().enumerate() {
            let (matmul, groups) = k.matmul(plan.rows, layer.outputs);
            pass.set_pipeline(&matmul.forward.pipeline);
            let work = Work::layer("forward", l);
            self.dispatch_chunks(pass, t, work, &plan.forward[l], step_offset, groups);
            if let Some(pack) = plan.packs.as_ref().and_then(|p| p.a.get(l)) {
                self.pack(pass, t, Work::layer("pack activations", l), pack);
            }
        }
    }

    /// Records the update of the step in slot `slot`: gradient clipping by
    /// norm if set, then the optimizer over every parameter.
    pub(crate) fn record_update(
        &self,
        pass: &mut wgpu::ComputePass,
        slot: usize,
        sample_norms: bool,
    ) {
        let k = &self.kernels;
        let max = self.ctx.limits.max_compute_workgroups_per_dimension;
        let step_offset = (slot as u64 * self.step_stride) as u32;
        let t = self.t + slot as u64 + 1;
        if sample_norms {
            pass.set_pipeline(&k.layer_norms.pipeline);
            pass.set_bind_group(0, &self.layer_norms_group, &[step_offset]);
            let groups = (self.mlp.layers().len() as u32, 2);
            self.dispatch(pass, t, Work::of("layer norms"), groups);
        }
        if self.clip_norm {
            pass.set_pipeline(&k.sum_squares.pipeline);
            pass.set_bind_group(0, &self.norm_groups[0], &[]);
            self.dispatch(pass, t, Work::of("clip: sum of squares"), (NORM_GROUPS, 1));
            pass.set_pipeline(&k.norm_finish.pipeline);
            pass.set_bind_group(0, &self.norm_groups[1], &[]);
            self.dispatch(pass, t, Work::of("clip: norm"), (1, 1));
        }
        pass.set_pipeline(&k.optimizer.pipeline);
        pass.set_bind_group(0, &self.optimizer_group, &[step_offset]);
        let groups = grid(self.layout.len / 4, 256, max);
        self.dispatch(pass, t, Work::of(OPTIMIZER), groups);
    }

    /// Dispatches the pipeline and bind group set on `pass`; when a profile
    /// is being taken, marks its end.
    fn dispatch(&self, pass: &mut wgpu::ComputePass, t: u64, work: Work, (x, y): (u32, u32)) {
        pass.dispatch_workgroups(x, y, 1);
        if let Some(marks) = self.marks.borrow_mut().as_mut() {
            marks.mark(pass, t, Some(work));
        }
    }

    /// Dispatches a product once per chunk of its reduction, in order
    /// (`Product`), with the pipeline set on `pass`.
    fn dispatch_chunks(
        &self,
        pass: &mut wgpu::ComputePass,
        t: u64,
        work: Work,
        product: &Product,
        step_offset: u32,
        groups: (u32, u32),
    ) {
        for chunk in product {
            pass.set_bind_group(0, chunk, &[step_offset]);
            self.dispatch(pass, t, work, groups);
        }
    }

    /// Records one pack dispatch (texture matmul).
    fn pack(&self, pass: &mut wgpu::ComputePass, t: u64, work: Work, pack: &Pack) {
        pass.set_pipeline(&self.kernels.pack_kernel(pack.quads).pipeline);
        pass.set_bind_group(0, &pack.group, &[]);
        self.dispatch(pass, t, work, pack.workgroups);
    }

    /// Starts a pass's timestamps when a profile is being taken (before its
    /// first dispatch).
    pub(crate) fn mark_pass_start(&self, pass: &mut wgpu::ComputePass) {
        if let Some(marks) = self.marks.borrow_mut().as_mut() {
            marks.mark(pass, self.t, None);
        }
    }

    /// Resolves the timestamps of the passes recorded into `encoder` (after
    /// they have ended), when a profile is being taken.
    pub(crate) fn resolve_marks(&self, encoder: &mut wgpu::CommandEncoder) {
        if let Some(marks) = self.marks.borrow_mut().as_mut() {
            marks.resolve(encoder);
        }
    }

    pub(crate) fn write_steps(&self, steps: &[StepUniform]) {
        let mut bytes = vec![0u8; steps.len() * self.step_stride as usize];
        for (i, s) in steps.iter().enumerate() {
            let at = i * self.step_stride as usize;
            bytes[at..at + std::mem::size_of::<StepUniform>()]
                .copy_from_slice(bytemuck::bytes_of(s));
        }
        self.ctx.queue.write_buffer(&self.steps, 0, &bytes);
    }

    pub(crate) async fn read_results_async(&self, slots: usize) -> Result<Vec<f32>> {
        let bytes = self
            .ctx
            .read_async(&self.results, 0, slots as u64 * 8)
            .await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// The epoch's steps with the data in host memory: each pass's rows are
    /// gathered here, written, and submitted before the next pass's.
    /// Returns the steps submitted: all, unless the stop flag, checked
    /// before each step, ends it early.
    pub(crate) fn stream_epoch(
        &self,
        train: &Dataset,
        order: &[u32],
        batches: &[(usize, usize)],
    ) -> Result<usize> {
        let mut scratch = Scratch::default();
        let queue = &self.ctx.queue;
        for (slot, &(start, end)) in batches.iter().enumerate() {
            if self.stop_flag.as_ref().is_some_and(StopFlag::is_requested) {
                self.ctx.check()?;
                return Ok(slot);
            }
            let len = end - start;
            let keys: Vec<PassKey> = PassKey::training(len, len, 0, self.capacity).collect();
            for (i, key) in keys.iter().enumerate() {
                let first = start + key.offset;
                self.write_rows(train, &order[first..first + key.rows], &mut scratch);
                let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
                if slot == 0 && i == 0 {
                    self.snapshot(&mut encoder);
                }
                {
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    self.mark_pass_start(&mut pass);
                    self.record(&mut pass, &self.plans[key], slot, false, true);
                    if i + 1 == keys.len() {
                        self.record_update(&mut pass, slot, self.samples_norms(slot));
                    }
                }
                self.resolve_marks(&mut encoder);
                queue.submit([encoder.finish()]);
            }
        }
        self.ctx.check()?;
        Ok(batches.len())
    }

    /// Whether the step in `slot` of the epoch being recorded (t not yet
    /// advanced) samples the per-layer norms.
    pub(crate) fn samples_norms(&self, slot: usize) -> bool {
        self.samples_norms_at(self.t, slot)
    }

    pub(crate) fn samples_norms_at(&self, t_before: u64, slot: usize) -> bool {
        self.norms_every
            .is_some_and(|n| (t_before + slot as u64 + 1).is_multiple_of(n))
    }
}
