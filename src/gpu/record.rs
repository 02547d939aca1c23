//! Recording a pass's dispatches into a compute pass: the forward pass, the
//! loss, the backward pass and the update, in the order of the math.

use super::backend::GpuBackend;
use super::pipelines::{Kernels, NORM_GROUPS, grid};
use super::plan::{Pack, PassKey, Plan};
use super::resources::Scratch;
use super::uniforms::StepParams;
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
        let rows = plan.rows;
        let layers = self.mlp.layers();
        if gather && let (Some(group), Some(d)) = (&plan.gather, &self.resident) {
            pass.set_pipeline(&k.gather.pipeline);
            pass.set_bind_group(0, group, &[step_offset]);
            let (x, y) = grid((rows * (d.features + d.target_width)) as u64, 256, max);
            pass.dispatch_workgroups(x, y, 1);
        }
        self.record_forward(pass, plan, step_offset);
        pass.set_pipeline(&k.loss.pipeline);
        pass.set_bind_group(0, &plan.loss, &[]);
        let (x, y) = grid(rows as u64, 64, max);
        pass.dispatch_workgroups(x, y, 1);
        pass.set_pipeline(&k.loss_sum.pipeline);
        pass.set_bind_group(0, &plan.loss_sum, &[step_offset]);
        pass.dispatch_workgroups(1, 1, 1);
        if !train {
            return;
        }
        let packs = plan.packs.as_ref();
        if let Some(p) = packs {
            record_pack(pass, k, &p.dz[layers.len() - 1]);
        }
        for (l, layer) in layers.iter().enumerate().rev() {
            let (matmul, (x, y)) = k.matmul(layer.outputs, layer.inputs);
            pass.set_pipeline(&matmul.weight_grad.pipeline);
            pass.set_bind_group(0, &plan.weight_grad[l], &[step_offset]);
            pass.dispatch_workgroups(x, y, 1);
            pass.set_pipeline(&k.column_sums.pipeline);
            pass.set_bind_group(0, &plan.bias_grad[l], &[]);
            pass.dispatch_workgroups((layer.outputs as u32).div_ceil(16), 1, 1);
            if let Some(group) = &plan.input_grad[l] {
                let (matmul, (x, y)) = k.matmul(rows, layer.inputs);
                pass.set_pipeline(&matmul.input_grad.pipeline);
                pass.set_bind_group(0, group, &[step_offset]);
                pass.dispatch_workgroups(x, y, 1);
                if let Some(p) = packs {
                    record_pack(pass, k, &p.dz[l - 1]);
                }
            }
        }
    }

    /// Records the forward pass of a plan from its input batch to the last
    /// layer's output (with the texture matmul: packing the weights, the
    /// input and each layer's output for the next).
    pub(crate) fn record_forward(
        &self,
        pass: &mut wgpu::ComputePass,
        plan: &Plan,
        step_offset: u32,
    ) {
        let k = &self.kernels;
        let layers = self.mlp.layers();
        if let (Some(t), Some(p)) = (&self.textures, &plan.packs) {
            for pack in t.weight_packs.iter().chain([&p.x]) {
                record_pack(pass, k, pack);
            }
        }
        for (l, layer) in layers.iter().enumerate() {
            let (matmul, (x, y)) = k.matmul(plan.rows, layer.outputs);
            pass.set_pipeline(&matmul.forward.pipeline);
            pass.set_bind_group(0, &plan.forward[l], &[step_offset]);
            pass.dispatch_workgroups(x, y, 1);
            if let Some(pack) = plan.packs.as_ref().and_then(|p| p.a.get(l)) {
                record_pack(pass, k, pack);
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
        if sample_norms {
            pass.set_pipeline(&k.layer_norms.pipeline);
            pass.set_bind_group(0, &self.layer_norms_group, &[step_offset]);
            pass.dispatch_workgroups(self.mlp.layers().len() as u32, 2, 1);
        }
        if self.clip_norm {
            pass.set_pipeline(&k.sum_squares.pipeline);
            pass.set_bind_group(0, &self.norm_groups[0], &[]);
            pass.dispatch_workgroups(NORM_GROUPS, 1, 1);
            pass.set_pipeline(&k.norm_finish.pipeline);
            pass.set_bind_group(0, &self.norm_groups[1], &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
        pass.set_pipeline(&k.optimizer.pipeline);
        pass.set_bind_group(0, &self.optimizer_group, &[step_offset]);
        let (x, y) = grid(self.layout.len / 4, 256, max);
        pass.dispatch_workgroups(x, y, 1);
    }

    pub(crate) fn write_steps(&self, steps: &[StepParams]) {
        let mut bytes = vec![0u8; steps.len() * self.step_stride as usize];
        for (i, s) in steps.iter().enumerate() {
            let at = i * self.step_stride as usize;
            bytes[at..at + std::mem::size_of::<StepParams>()]
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
                    self.record(&mut pass, &self.plans[key], slot, false, true);
                    if i + 1 == keys.len() {
                        self.record_update(&mut pass, slot, self.samples_norms(slot));
                    }
                }
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

/// Records one pack dispatch (texture matmul).
pub(crate) fn record_pack(
    pass: &mut wgpu::ComputePass,
    kernels: &Kernels,
    (group, (x, y), quads): &Pack,
) {
    pass.set_pipeline(&kernels.pack_kernel(*quads).pipeline);
    pass.set_bind_group(0, group, &[]);
    pass.dispatch_workgroups(*x, *y, 1);
}
