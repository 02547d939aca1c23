//! Recording a pass's dispatches into a compute pass: the forward pass, the
//! loss, the backward pass and the update, in the order of the math.

use super::backend::GpuBackend;
use super::codes::Epilogue;
use super::dispatch::grid;
use super::ensemble::EnsembleOp;

use super::pipelines::StepKernel;
use super::pipelines::{Kernel, Kernels, MatmulKernels, NORM_GROUPS};
use super::plan::{Plan, Product, weight_grad_epilogue};
use super::profile::{OPTIMIZER, Work};
use super::resources::Pack;
use super::sequence::StepOp;
use super::uniforms::StepUniform;
use super::window::StepAt;
use crate::error::Result;
use crate::model::LayerKind;

impl GpuBackend {
    /// Records the forward pass, the loss, and (with `train`) the backward
    /// pass, for the step `at`.
    pub(crate) fn record(
        &self,
        pass: &mut wgpu::ComputePass,
        plan: &Plan,
        at: StepAt,
        gather: bool,
        train: bool,
    ) {
        let k = &self.kernels;
        let max = self.ctx.limits.max_compute_workgroups_per_dimension;
        let step_offset = self.step_offset(at);
        let t = at.t;
        let rows = plan.rows;
        let layers = self.mlp.layers();
        if gather && let (Some(group), Some(d)) = (&plan.gather, &self.resident) {
            pass.set_pipeline(&k.gather.pipeline);
            pass.set_bind_group(0, group, &[step_offset]);
            let groups = grid((rows * (d.features + d.target_width)) as u64, 256, max);
            self.dispatch(pass, t, Work::of("gather batch"), groups);
        }
        self.record_forward(pass, plan, at);
        let loss = k.loss_for(plan.loss_rows, self.mlp.outputs(), max);
        pass.set_pipeline(&loss.kernel.pipeline);
        pass.set_bind_group(0, &plan.loss, &[step_offset]);
        self.dispatch(pass, t, Work::of("loss"), loss.groups);
        if !loss.summed {
            pass.set_pipeline(&k.loss_sum.pipeline);
            pass.set_bind_group(0, &plan.loss_sum, &[step_offset]);
            self.dispatch(pass, t, Work::of("loss sum"), (1, 1));
        }
        if !train {
            return;
        }
        if let Some(ensemble) = &plan.ensemble {
            self.record_ensemble(pass, &ensemble.backward, at, plan.accumulate);
            return;
        }
        if let Some(p) = &plan.packs {
            let last = layers.len() - 1;
            self.pack(pass, t, Work::layer("pack dZ", last), &p.dz[last]);
        }
        match &plan.steps {
            None => {
                for l in (0..layers.len()).rev() {
                    self.record_dense_backward(pass, plan, l, at);
                }
            }
            Some(steps) => {
                for (i, kind) in self.mlp.kinds().iter().enumerate().rev() {
                    self.record_steps(pass, &steps.backward[i], at);
                    if let LayerKind::Dense(l) = *kind {
                        self.record_dense_backward(pass, plan, l, at);
                    }
                }
            }
        }
    }

    /// Records dense layer `l`'s backward pass: its weight and bias
    /// gradients from its dZ, and its input gradient (the layer before's
    /// dZ through its f', or another step's output gradient).
    fn record_dense_backward(
        &self,
        pass: &mut wgpu::ComputePass,
        plan: &Plan,
        l: usize,
        at: StepAt,
    ) {
        let k = &self.kernels;
        let max = self.ctx.limits.max_compute_workgroups_per_dimension;
        let step_offset = self.step_offset(at);
        let t = at.t;
        let rows = plan.rows;
        let layer = &self.mlp.layers()[l];
        let packs = plan.packs.as_ref();
        let (matmul, _) = k.matmul(layer.outputs, layer.inputs);
        let weight_grad = matmul.weight_grad(&self.ctx.device, plan.accumulate);
        let work = Work::layer("weight grad", l);
        let epilogue = weight_grad_epilogue(plan.accumulate);
        let product = &plan.weight_grad[l];
        self.dispatch_product(
            pass,
            (t, work),
            product,
            step_offset,
            weight_grad,
            (matmul, epilogue),
        );
        if let Some(group) = &plan.bias_grad[l] {
            pass.set_pipeline(&k.column_sums.pipeline);
            pass.set_bind_group(0, group, &[]);
            let groups = Kernels::column_sums_groups(layer.outputs, max);
            self.dispatch(pass, t, Work::layer("bias grad", l), groups);
        }
        if let Some(product) = &plan.input_grad[l] {
            let (matmul, _) = k.matmul(rows, layer.inputs);
            let work = Work::layer("input grad", l);
            let finish = (matmul, Epilogue::ActivationGrad);
            self.dispatch_product(
                pass,
                (t, work),
                product,
                step_offset,
                &matmul.input_grad,
                finish,
            );
            if let Some(p) = packs {
                self.pack(pass, t, Work::layer("pack dZ", l - 1), &p.dz[l - 1]);
            }
        }
    }

    /// Records a TabM pass's dispatches (src/gpu/ensemble.rs), in order;
    /// its weight gradients add to those there with `accumulate`.
    fn record_ensemble(
        &self,
        pass: &mut wgpu::ComputePass,
        ops: &[EnsembleOp],
        at: StepAt,
        accumulate: bool,
    ) {
        let Some(ensemble) = &self.ensemble else {
            return;
        };
        let step_offset = self.step_offset(at);
        for op in ops {
            match op {
                EnsembleOp::Step {
                    kernel,
                    group,
                    groups,
                    work,
                } => {
                    pass.set_pipeline(&ensemble.kernel(*kernel).pipeline);
                    pass.set_bind_group(0, group, &[step_offset]);
                    self.dispatch(pass, at.t, *work, *groups);
                }
                EnsembleOp::Product {
                    kernel,
                    size,
                    chunks,
                    groups,
                    work,
                } => {
                    let (matmuls, _) = self.kernels.matmul(size.0, size.1);
                    let pipeline = kernel.of(matmuls, &self.ctx.device, accumulate);
                    pass.set_pipeline(&pipeline.pipeline);
                    for chunk in chunks {
                        pass.set_bind_group(0, chunk, &[step_offset]);
                        self.dispatch_z(pass, at.t, *work, *groups);
                    }
                }
            }
        }
    }

    /// Records the dispatches of a step that is not a dense layer.
    fn record_steps(&self, pass: &mut wgpu::ComputePass, ops: &[StepOp], at: StepAt) {
        let Some(sequence) = &self.sequence else {
            return;
        };
        let step_offset = self.step_offset(at);
        for op in ops {
            pass.set_pipeline(&sequence.kernels.get(op.kernel).pipeline);
            // The residual kernels read the step's uniform (dropout's t).
            let offsets: &[u32] = match op.kernel {
                StepKernel::ForwardStep | StepKernel::GradStep => &[step_offset],
                _ => &[],
            };
            pass.set_bind_group(0, &op.group, offsets);
            self.dispatch(pass, at.t, op.work, op.groups);
        }
    }

    /// Records dense layer `l`'s forward product (Z, and A through its
    /// activation and dropout), and with the texture matmul the pack of A.
    fn record_dense_forward(
        &self,
        pass: &mut wgpu::ComputePass,
        plan: &Plan,
        l: usize,
        at: StepAt,
    ) {
        let layer = &self.mlp.layers()[l];
        let (matmul, _) = self.kernels.matmul(plan.rows, layer.outputs);
        let work = Work::layer("forward", l);
        let finish = (matmul, Epilogue::BiasActivation);
        self.dispatch_product(
            pass,
            (at.t, work),
            &plan.forward[l],
            self.step_offset(at),
            &matmul.forward,
            finish,
        );
        if let Some(pack) = plan.packs.as_ref().and_then(|p| p.a.get(l)) {
            self.pack(pass, at.t, Work::layer("pack activations", l), pack);
        }
    }

    /// Records the forward pass of a plan from its input batch to the last
    /// layer's output (with the texture matmul: packing the weights, the
    /// input and each layer's output for the next).
    pub(crate) fn record_forward(&self, pass: &mut wgpu::ComputePass, plan: &Plan, at: StepAt) {
        let t = at.t;
        let layers = self.mlp.layers();
        if let (Some(textures), Some(p)) = (&self.textures, &plan.packs) {
            for (l, pack) in textures.weight_packs.iter().enumerate() {
                self.pack(pass, t, Work::layer("pack weights", l), pack);
            }
            self.pack(pass, t, Work::of("pack input"), &p.x);
        }
        if let Some(ensemble) = &plan.ensemble {
            self.record_ensemble(pass, &ensemble.forward, at, plan.accumulate);
            return;
        }
        match &plan.steps {
            None => {
                for l in 0..layers.len() {
                    self.record_dense_forward(pass, plan, l, at);
                }
            }
            Some(steps) => {
                for (i, kind) in self.mlp.kinds().iter().enumerate() {
                    match *kind {
                        LayerKind::Dense(l) => self.record_dense_forward(pass, plan, l, at),
                        _ => self.record_steps(pass, &steps.forward[i], at),
                    }
                }
            }
        }
    }

    /// Records the update of the step `at`: its layer norms when
    /// `sample_norms`, the partial sums of the gradient's norm when clipping
    /// by it, then the optimizer over every parameter (a dispatch a piece).
    pub(crate) fn record_update(
        &self,
        pass: &mut wgpu::ComputePass,
        at: StepAt,
        sample_norms: bool,
    ) {
        let k = &self.kernels;
        let max = self.ctx.limits.max_compute_workgroups_per_dimension;
        let step_offset = self.step_offset(at);
        let t = at.t;
        let update = &self.update;
        if sample_norms {
            pass.set_pipeline(&k.layer_norms.pipeline);
            for (group, layers) in &update.layer_norms {
                pass.set_bind_group(0, group, &[step_offset]);
                self.dispatch(pass, t, Work::of("layer norms"), (*layers, 2));
            }
        }
        if self.clip_norm {
            pass.set_pipeline(&k.sum_squares.pipeline);
            for group in &update.sum_squares {
                pass.set_bind_group(0, group, &[]);
                self.dispatch(pass, t, Work::of("clip: sum of squares"), (NORM_GROUPS, 1));
            }
        }
        // Clipping by norm: each workgroup finishes the norm from the
        // partial sums before it updates.
        let optimizer = if self.clip_norm {
            &k.optimizer_clipped
        } else {
            &k.optimizer
        };
        pass.set_pipeline(&optimizer.pipeline);
        for (group, len) in &update.optimizer {
            pass.set_bind_group(0, group, &[step_offset]);
            let groups = grid(len / 4, 256, max);
            self.dispatch(pass, t, Work::of(OPTIMIZER), groups);
        }
    }

    /// Dispatches the pipeline and bind group set on `pass`: every
    /// dispatch of training goes through here, where a profile being taken
    /// counts it (and marks its end).
    fn dispatch(&self, pass: &mut wgpu::ComputePass, t: u64, work: Work, (x, y): (u32, u32)) {
        self.dispatch_z(pass, t, work, (x, y, 1));
    }

    /// [`dispatch`](Self::dispatch) with a third dimension of workgroups.
    fn dispatch_z(
        &self,
        pass: &mut wgpu::ComputePass,
        t: u64,
        work: Work,
        (x, y, z): (u32, u32, u32),
    ) {
        pass.dispatch_workgroups(x, y, z);
        if let Some(profiler) = self.profiler.borrow_mut().as_mut() {
            profiler.dispatched(pass, t, work);
        }
    }

    /// Dispatches a product with `kernel` once per chunk of its reduction,
    /// in order (`Product`); a split product's chunks each followed by the
    /// finishing dispatch of `matmul`'s module for `epilogue`.
    fn dispatch_product(
        &self,
        pass: &mut wgpu::ComputePass,
        (t, work): (u64, Work),
        product: &Product,
        step_offset: u32,
        kernel: &Kernel,
        (matmul, epilogue): (&MatmulKernels, Epilogue),
    ) {
        let finish = product
            .groups
            .finish
            .map(|groups| (matmul.finish(&self.ctx.device, epilogue), groups));
        for (i, chunk) in product.chunks.iter().enumerate() {
            if i == 0 || finish.is_some() {
                pass.set_pipeline(&kernel.pipeline);
            }
            pass.set_bind_group(0, chunk, &[step_offset]);
            self.dispatch_z(pass, t, work, product.groups.matmul);
            if let Some((finish, groups)) = finish {
                pass.set_pipeline(&finish.pipeline);
                self.dispatch(pass, t, work, groups);
            }
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
        if let Some(profiler) = self.profiler.borrow_mut().as_mut() {
            profiler.pass_start(pass, self.t);
        }
    }

    /// Resolves the timestamps of the passes recorded into `encoder` (after
    /// they have ended), when a profile is being taken.
    pub(crate) fn resolve_marks(&self, encoder: &mut wgpu::CommandEncoder) {
        if let Some(marks) = self.profiler.borrow_mut().as_mut().and_then(|p| p.marks()) {
            marks.resolve(encoder);
        }
    }

    /// Writes the uniform blocks of consecutive slots from `first_slot`.
    pub(crate) fn write_steps(&self, first_slot: usize, steps: &[StepUniform]) {
        let stride = self.step_stride as usize;
        let mut bytes = vec![0u8; steps.len() * stride];
        for (i, s) in steps.iter().enumerate() {
            let at = i * stride;
            bytes[at..at + std::mem::size_of::<StepUniform>()]
                .copy_from_slice(bytemuck::bytes_of(s));
        }
        let offset = (first_slot * stride) as u64;
        self.ctx.queue.write_buffer(&self.steps, offset, &bytes);
    }

    pub(crate) async fn read_results_async(&self, slots: usize) -> Result<Vec<f32>> {
        let bytes = self
            .ctx
            .read_async(&self.results, 0, slots as u64 * 8)
            .await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Whether step `t` samples the per-layer norms.
    pub(crate) fn samples_norms(&self, t: u64) -> bool {
        self.norms_every.is_some_and(|n| t.is_multiple_of(n))
    }

    /// The dynamic offset of the step's uniform block.
    fn step_offset(&self, at: StepAt) -> u32 {
        (at.slot as u64 * self.step_stride) as u32
    }
}
