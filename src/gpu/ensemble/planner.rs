//! The dispatches of each TabM step, forward and backward, as shapes and
//! the regions they bind (`Slot`), before the bind groups.

use super::{Ensemble, EnsembleResources, Input, Pending, ProductKernel, Slot};
use crate::dropout::Dropout;
use crate::gpu::dispatch::{grid, matmul_grid};
use crate::gpu::pipelines::EnsembleKernel;
use crate::gpu::profile::Work;
use crate::gpu::uniforms::{EnsembleShape, MatmulShape, UniformBlocks};
use crate::model::LayerKind;

/// Builds one pass's pending dispatches, step by step.
pub(super) struct Planner<'a, 'r> {
    pub(super) ensemble: &'a Ensemble,
    pub(super) res: &'a EnsembleResources<'r>,
    pub(super) rows: usize,
    pub(super) offset: usize,
    pub(super) train: bool,
    pub(super) accumulate: bool,
    pub(super) blocks: UniformBlocks,
    pub(super) forward: Vec<Pending>,
    pub(super) backward: Vec<Pending>,
}

impl Planner<'_, '_> {
    fn members(&self) -> usize {
        self.ensemble.members
    }

    /// Dense layer `l`'s dropout in a training pass.
    fn dropout(&self, l: usize) -> Option<Dropout> {
        self.res
            .dropout
            .get(l)
            .copied()
            .flatten()
            .filter(|_| self.train)
    }

    /// The shape of a TabM kernel over `width` columns of every member.
    fn shape(&self, width: usize) -> EnsembleShape {
        EnsembleShape {
            members: self.members() as u32,
            rows: self.rows as u32,
            width: width as u32,
            row_offset: self.offset as u32,
            mean: self.ensemble.mean_code,
            accumulate: u32::from(self.accumulate),
            ..Default::default()
        }
    }

    /// With dense layer `l`'s dropout (a training pass) and f.
    fn with_layer(&self, mut shape: EnsembleShape, l: usize) -> EnsembleShape {
        (shape.activation, shape.slope) = self.res.mlp.layers()[l].activation.code();
        if let Some(d) = self.dropout(l) {
            shape.dropout_threshold = d.threshold.max(1);
            shape.dropout_scale = d.scale;
            shape.dropout_seed = self.res.dropout_seed;
            shape.dropout_layer = l as u32;
        }
        shape
    }

    fn step(
        &mut self,
        kernel: EnsembleKernel,
        shape: EnsembleShape,
        slots: [Slot; 6],
        work: Work,
    ) -> Pending {
        let threads = match kernel {
            EnsembleKernel::MemberColumnSums => shape.members * shape.width,
            EnsembleKernel::EnsembleMean => shape.rows * shape.width,
            _ => shape.members * shape.rows * shape.width,
        };
        let groups = grid(threads as u64, kernel.group_size(), self.res.max_per_dim);
        Pending::Step {
            kernel,
            at: self.blocks.push(&shape),
            slots,
            groups,
            work,
        }
    }

    /// A product of `shape` (its m, n, k and members), unsplit, in chunks
    /// of K.
    fn product(
        &mut self,
        kernel: ProductKernel,
        mut shape: MatmulShape,
        slots: [Slot; 5],
        work: Work,
    ) -> Pending {
        let (m, n) = (shape.m as usize, shape.n as usize);
        let (matmuls, _) = self.res.kernels.matmul(m, n);
        let (x, y) = matmul_grid(&matmuls.tiling, m, n);
        shape.slices = 1;
        shape.slice_k = shape.k;
        shape.k_end = shape.k;
        if kernel == ProductKernel::WeightGrad && self.accumulate {
            matmuls.weight_grad(self.res.device, true);
        }
        Pending::Product {
            kernel,
            size: (m, n),
            at: self.blocks.push_chunks(shape),
            slots,
            groups: (x, y, self.members_of(&shape)),
            work,
        }
    }

    fn members_of(&self, shape: &MatmulShape) -> u32 {
        shape.members.max(1)
    }

    /// A matmul's dropout of layer `l` over the members' rows.
    fn matmul_dropout(&self, shape: MatmulShape, l: usize) -> MatmulShape {
        MatmulShape {
            ensemble_rows: self.rows as u32,
            row_offset: self.offset as u32,
            ..shape
        }
        .with_dropout(self.dropout(l), self.res.dropout_seed, l)
    }

    fn input_slot(&self, input: Input) -> Slot {
        match input {
            Input::Batch => Slot::Batch,
            Input::Scaled => Slot::ScaledInput,
            Input::Dense(l) => Slot::A(l),
        }
    }

    pub(super) fn forward_step(&mut self, i: usize) {
        let input = self.ensemble.input_of(i);
        let ops = match self.ensemble.kinds[i] {
            LayerKind::Scale => self.forward_scale(input),
            LayerKind::Dense(l) => self.forward_dense(l, input),
            LayerKind::EnsembleDense(l) => self.forward_batch_ensemble(i, l, input),
            LayerKind::EnsembleLinear(l) => self.forward_member_linear(l, input),
            LayerKind::EnsembleView => Vec::new(),
            other => unreachable!("TabM has no {other:?} step"),
        };
        self.forward.extend(ops);
    }

    /// The ensemble's mean of the output layer's A, for the loss and
    /// `predict`.
    pub(super) fn mean(&mut self) {
        let last = self.res.mlp.layers().len() - 1;
        let shape = self.shape(self.res.mlp.outputs());
        let slots = [
            Slot::A(last),
            Slot::Unused,
            Slot::Unused,
            Slot::Unused,
            Slot::Mean,
            Slot::Unused,
        ];
        let op = self.step(
            EnsembleKernel::EnsembleMean,
            shape,
            slots,
            Work::of("ensemble mean"),
        );
        self.forward.push(op);
    }

    /// Where step `i`'s input gradient goes, with the f' and dropout it
    /// passes: the layer before's dZ, `tabm-mini`'s scaled input's
    /// gradient, or nowhere (after the view).
    fn input_grad(&self, i: usize) -> Option<(Slot, Option<usize>)> {
        match self.ensemble.input_of(i) {
            Input::Batch => None,
            Input::Scaled => Some((Slot::ScaledInputGrad, None)),
            Input::Dense(prev) => Some((Slot::Dz(prev), Some(prev))),
        }
    }

    pub(super) fn backward_step(&mut self, i: usize) {
        let input = self.ensemble.input_of(i);
        let ops = match self.ensemble.kinds[i] {
            LayerKind::Scale => self.backward_scale(),
            LayerKind::Dense(l) => self.backward_dense(i, l, input),
            LayerKind::EnsembleDense(l) => self.backward_batch_ensemble(i, l, input),
            LayerKind::EnsembleLinear(l) => self.backward_member_linear(i, l, input),
            LayerKind::EnsembleView => Vec::new(),
            other => unreachable!("TabM has no {other:?} step"),
        };
        self.backward.extend(ops);
    }

    /// An input gradient's shape through the previous dense layer's f'
    /// and dropout (none into `tabm-mini`'s scaled input).
    fn through_prev(&self, shape: MatmulShape, prev: Option<usize>) -> MatmulShape {
        match prev {
            None => MatmulShape {
                ensemble_rows: self.rows as u32,
                ..shape
            },
            Some(prev) => {
                let (activation, slope) = self.res.mlp.layers()[prev].activation.code();
                self.matmul_dropout(
                    MatmulShape {
                        activation,
                        slope,
                        ..shape
                    },
                    prev,
                )
            }
        }
    }

    /// Forward: `tabm-mini`'s scaling of the batch, every member's.
    fn forward_scale(&mut self, input: Input) -> Vec<Pending> {
        let mlp = self.res.mlp;
        let layout = self.res.layout;
        let shared = matches!(input, Input::Batch);
        let affine = mlp.affine_range().expect("tabm-mini has its scaling");
        let mut shape = self.shape(mlp.inputs());
        (shape.shared_input, shape.has_b) = (u32::from(shared), 1);
        let scale = Slot::Params(layout.affine.expect("placed"), affine.len() as u64);
        let slots = [
            Slot::Batch,
            scale,
            Slot::Unused,
            Slot::Unused,
            Slot::ScaledInput,
            Slot::Unused,
        ];
        vec![self.step(
            EnsembleKernel::MemberScale,
            shape,
            slots,
            Work::of("TabM scaling"),
        )]
    }

    /// Forward: a shared layer's product over the stacked rows (`tabm-mini`).
    fn forward_dense(&mut self, l: usize, input: Input) -> Vec<Pending> {
        let mlp = self.res.mlp;
        let layout = self.res.layout;
        let stacked = (self.members() * self.rows) as u32;
        let layer = mlp.layers()[l];
        let (activation, slope) = layer.activation.code();
        let shape = MatmulShape {
            m: stacked,
            n: layer.outputs as u32,
            k: layer.inputs as u32,
            activation,
            slope,
            ..Default::default()
        };
        let shape = self.matmul_dropout(shape, l);
        let slots = [
            self.input_slot(input),
            Slot::Params(layout.weight[l], (layer.inputs * layer.outputs) as u64),
            Slot::Z(l),
            Slot::Params(layout.bias[l], layer.outputs as u64),
            Slot::A(l),
        ];
        vec![self.product(
            ProductKernel::Forward,
            shape,
            slots,
            Work::layer("forward", l),
        )]
    }

    /// Forward: a BatchEnsemble layer: X ⊙ r, the shared product U, Z = U ⊙ s + b.
    fn forward_batch_ensemble(&mut self, i: usize, l: usize, input: Input) -> Vec<Pending> {
        let mlp = self.res.mlp;
        let layout = self.res.layout;
        let stacked = (self.members() * self.rows) as u32;
        let shared = matches!(input, Input::Batch);
        let layer = mlp.layers()[l];
        let (r, s) = mlp.scaling_ranges(l);
        let scaling = layout.scaling[l].expect("a BatchEnsemble layer has r and s");
        let r_at = scaling;
        let mut scale = self.shape(layer.inputs);
        (scale.shared_input, scale.has_b) = (u32::from(shared), 1);
        let scale_slots = [
            self.input_slot(input),
            Slot::Params(r_at, r.len() as u64),
            Slot::Unused,
            Slot::Unused,
            Slot::Scaled(i),
            Slot::Unused,
        ];
        let product = MatmulShape {
            m: stacked,
            n: layer.outputs as u32,
            k: layer.inputs as u32,
            ..Default::default()
        };
        let product_slots = [
            Slot::Scaled(i),
            Slot::Params(layout.weight[l], (layer.inputs * layer.outputs) as u64),
            Slot::Z(l),
            Slot::Zeros,
            Slot::Product(i),
        ];
        // s read past r, from r's aligned offset.
        let epilogue = EnsembleShape {
            b_offset: r.len() as u32,
            ..self.with_layer(self.shape(layer.outputs), l)
        };
        let bias = mlp.bias_range(l).len() as u64;
        let epilogue_slots = [
            Slot::Product(i),
            Slot::Params(r_at, (r.len() + s.len()) as u64),
            Slot::Params(layout.bias[l], bias),
            Slot::Unused,
            Slot::Z(l),
            Slot::A(l),
        ];
        vec![
            self.step(
                EnsembleKernel::MemberScale,
                scale,
                scale_slots,
                Work::layer("X ⊙ r", l),
            ),
            self.product(
                ProductKernel::Forward,
                product,
                product_slots,
                Work::layer("forward", l),
            ),
            self.step(
                EnsembleKernel::EnsembleEpilogue,
                epilogue,
                epilogue_slots,
                Work::layer("U ⊙ s + b", l),
            ),
        ]
    }

    /// Forward: the members' own layer, the member the product's z.
    fn forward_member_linear(&mut self, l: usize, input: Input) -> Vec<Pending> {
        let mlp = self.res.mlp;
        let layout = self.res.layout;
        let rows = self.rows as u32;
        let shared = matches!(input, Input::Batch);
        let layer = mlp.layers()[l];
        let (inputs, outputs) = (layer.inputs as u32, layer.outputs as u32);
        let (activation, slope) = layer.activation.code();
        let shape = MatmulShape {
            m: rows,
            n: outputs,
            k: inputs,
            activation,
            slope,
            members: self.members() as u32,
            member_a: if shared { 0 } else { rows * inputs },
            member_b: inputs * outputs,
            member_c: rows * outputs,
            member_aux: outputs,
            member_out2: rows * outputs,
            ..Default::default()
        };
        let shape = self.matmul_dropout(shape, l);
        let slots = [
            self.input_slot(input),
            Slot::Params(layout.weight[l], mlp.weight_range(l).len() as u64),
            Slot::Z(l),
            Slot::Params(layout.bias[l], mlp.bias_range(l).len() as u64),
            Slot::A(l),
        ];
        vec![self.product(
            ProductKernel::MemberForward,
            shape,
            slots,
            Work::layer("forward", l),
        )]
    }

    /// Backward: the scaling's gradient, each member's Σ dY ⊙ X.
    fn backward_scale(&mut self) -> Vec<Pending> {
        let mlp = self.res.mlp;
        let layout = self.res.layout;
        let mut ops = Vec::new();
        let affine = mlp.affine_range().expect("tabm-mini has its scaling");
        let mut shape = self.shape(mlp.inputs());
        (shape.shared_input, shape.has_b) = (1, 1);
        let grads = Slot::Grads(layout.affine.expect("placed"), affine.len() as u64);
        let slots = [
            Slot::ScaledInputGrad,
            Slot::Batch,
            Slot::Unused,
            Slot::Unused,
            grads,
            Slot::Unused,
        ];
        ops.push(self.step(
            EnsembleKernel::MemberColumnSums,
            shape,
            slots,
            Work::of("TabM scaling gradient"),
        ));
        ops
    }

    /// Backward: dW over the stacked rows, the shared bias's column sums, dX.
    fn backward_dense(&mut self, i: usize, l: usize, input: Input) -> Vec<Pending> {
        let mlp = self.res.mlp;
        let layout = self.res.layout;
        let stacked = (self.members() * self.rows) as u32;
        let mut ops = Vec::new();
        let layer = mlp.layers()[l];
        let (inputs, outputs) = (layer.inputs as u32, layer.outputs as u32);
        let weight_grad = MatmulShape {
            m: outputs,
            n: inputs,
            k: stacked,
            ..Default::default()
        };
        let weight = (layout.weight[l], (inputs * outputs) as u64);
        let slots = [
            Slot::Dz(l),
            self.input_slot(input),
            Slot::Grads(weight.0, weight.1),
            Slot::Unused,
            Slot::Unused,
        ];
        ops.push(self.product(
            ProductKernel::WeightGrad,
            weight_grad,
            slots,
            Work::layer("weight grad", l),
        ));
        // The shared bias's gradient: column sums over every member's rows.
        let mut sums = self.shape(layer.outputs);
        (sums.members, sums.rows) = (1, stacked);
        let slots = [
            Slot::Dz(l),
            Slot::Unused,
            Slot::Unused,
            Slot::Unused,
            Slot::Grads(layout.bias[l], outputs as u64),
            Slot::Unused,
        ];
        ops.push(self.step(
            EnsembleKernel::MemberColumnSums,
            sums,
            slots,
            Work::layer("bias grad", l),
        ));
        if let Some((target, prev)) = self.input_grad(i) {
            let shape = self.through_prev(
                MatmulShape {
                    m: stacked,
                    n: inputs,
                    k: outputs,
                    ..Default::default()
                },
                prev,
            );
            let aux = prev.map_or(self.input_slot(input), Slot::Z);
            let slots = [
                Slot::Dz(l),
                Slot::Params(weight.0, weight.1),
                target,
                aux,
                Slot::Unused,
            ];
            ops.push(self.product(
                ProductKernel::InputGrad,
                shape,
                slots,
                Work::layer("input grad", l),
            ));
        }
        ops
    }

    /// Backward: db, ds, dU = dZ ⊙ s, dW, dX̃ = dU · W, dr, dX = dX̃ ⊙ r.
    fn backward_batch_ensemble(&mut self, i: usize, l: usize, input: Input) -> Vec<Pending> {
        let mlp = self.res.mlp;
        let layout = self.res.layout;
        let stacked = (self.members() * self.rows) as u32;
        let shared = matches!(input, Input::Batch);
        let layer = mlp.layers()[l];
        let (inputs, outputs) = (layer.inputs as u32, layer.outputs as u32);
        let (r, _) = mlp.scaling_ranges(l);
        let scaling = layout.scaling[l].expect("a BatchEnsemble layer has r and s");
        let r_at = scaling;
        let mut ops = self.batch_ensemble_output_grads(i, l);
        let weight = (layout.weight[l], (inputs * outputs) as u64);
        let weight_grad = MatmulShape {
            m: outputs,
            n: inputs,
            k: stacked,
            ..Default::default()
        };
        let slots = [
            Slot::ProductGrad(i),
            Slot::Scaled(i),
            Slot::Grads(weight.0, weight.1),
            Slot::Unused,
            Slot::Unused,
        ];
        ops.push(self.product(
            ProductKernel::WeightGrad,
            weight_grad,
            slots,
            Work::layer("weight grad", l),
        ));
        let input_grad = MatmulShape {
            m: stacked,
            n: inputs,
            k: outputs,
            ..Default::default()
        };
        let slots = [
            Slot::ProductGrad(i),
            Slot::Params(weight.0, weight.1),
            Slot::ScaledGrad(i),
            Slot::Scaled(i),
            Slot::Unused,
        ];
        ops.push(self.product(
            ProductKernel::InputGrad,
            input_grad,
            slots,
            Work::layer("dX ⊙ r", l),
        ));
        let mut dr_shape = self.shape(layer.inputs);
        (dr_shape.has_b, dr_shape.shared_input) = (1, u32::from(shared));
        let dr = [
            Slot::ScaledGrad(i),
            self.input_slot(input),
            Slot::Unused,
            Slot::Unused,
            Slot::Grads(r_at, r.len() as u64),
            Slot::Unused,
        ];
        ops.push(self.step(
            EnsembleKernel::MemberColumnSums,
            dr_shape,
            dr,
            Work::layer("dr", l),
        ));
        if let Some((target, prev)) = self.input_grad(i) {
            let mut shape = EnsembleShape {
                has_b: 1,
                accumulate: 0,
                ..self.shape(layer.inputs)
            };
            let mut z = Slot::Unused;
            if let Some(prev) = prev {
                shape = self.with_layer(shape, prev);
                z = Slot::Z(prev);
            }
            let slots = [
                Slot::ScaledGrad(i),
                Slot::Params(r_at, r.len() as u64),
                Slot::Unused,
                z,
                target,
                Slot::Unused,
            ];
            ops.push(self.step(
                EnsembleKernel::MemberScale,
                shape,
                slots,
                Work::layer("input grad", l),
            ));
        }
        ops
    }

    /// Backward: each member's dW, db and dX.
    fn backward_member_linear(&mut self, i: usize, l: usize, input: Input) -> Vec<Pending> {
        let mlp = self.res.mlp;
        let layout = self.res.layout;
        let rows = self.rows as u32;
        let shared = matches!(input, Input::Batch);
        let mut ops = Vec::new();
        let layer = mlp.layers()[l];
        let (inputs, outputs) = (layer.inputs as u32, layer.outputs as u32);
        let k = self.members() as u32;
        let weight = (layout.weight[l], mlp.weight_range(l).len() as u64);
        let weight_grad = MatmulShape {
            m: inputs,
            n: outputs,
            k: rows,
            members: k,
            member_a: if shared { 0 } else { rows * inputs },
            member_b: rows * outputs,
            member_c: inputs * outputs,
            ..Default::default()
        };
        let slots = [
            self.input_slot(input),
            Slot::Dz(l),
            Slot::Grads(weight.0, weight.1),
            Slot::Unused,
            Slot::Unused,
        ];
        ops.push(self.product(
            ProductKernel::WeightGrad,
            weight_grad,
            slots,
            Work::layer("weight grad", l),
        ));
        let sums = self.shape(layer.outputs);
        let bias = Slot::Grads(layout.bias[l], mlp.bias_range(l).len() as u64);
        let db = [
            Slot::Dz(l),
            Slot::Unused,
            Slot::Unused,
            Slot::Unused,
            bias,
            Slot::Unused,
        ];
        ops.push(self.step(
            EnsembleKernel::MemberColumnSums,
            sums,
            db,
            Work::layer("bias grad", l),
        ));
        if let Some((target, prev)) = self.input_grad(i) {
            let shape = MatmulShape {
                m: rows,
                n: inputs,
                k: outputs,
                members: k,
                member_a: rows * outputs,
                member_b: inputs * outputs,
                member_c: rows * inputs,
                member_aux: rows * inputs,
                ..Default::default()
            };
            let shape = self.through_prev(shape, prev);
            let aux = prev.map_or(self.input_slot(input), Slot::Z);
            let slots = [
                Slot::Dz(l),
                Slot::Params(weight.0, weight.1),
                target,
                aux,
                Slot::Unused,
            ];
            ops.push(self.product(
                ProductKernel::MemberInputGrad,
                shape,
                slots,
                Work::layer("input grad", l),
            ));
        }
        ops
    }

    /// A BatchEnsemble layer's db and ds from its dZ, and dU = dZ ⊙ s.
    fn batch_ensemble_output_grads(&mut self, i: usize, l: usize) -> Vec<Pending> {
        let (mlp, layout) = (self.res.mlp, self.res.layout);
        let layer = mlp.layers()[l];
        let (r, s) = mlp.scaling_ranges(l);
        let r_at = layout.scaling[l].expect("a BatchEnsemble layer has r and s");
        let mut ops = Vec::new();
        let sums = self.shape(layer.outputs);
        let bias = Slot::Grads(layout.bias[l], mlp.bias_range(l).len() as u64);
        let db = [
            Slot::Dz(l),
            Slot::Unused,
            Slot::Unused,
            Slot::Unused,
            bias,
            Slot::Unused,
        ];
        ops.push(self.step(
            EnsembleKernel::MemberColumnSums,
            sums,
            db,
            Work::layer("db", l),
        ));
        // s and its gradient past r, from r's aligned offset.
        let rs = (r.len() + s.len()) as u64;
        let ds_shape = EnsembleShape {
            has_b: 1,
            out_offset: r.len() as u32,
            ..sums
        };
        let ds = [
            Slot::Dz(l),
            Slot::Product(i),
            Slot::Unused,
            Slot::Unused,
            Slot::Grads(r_at, rs),
            Slot::Unused,
        ];
        ops.push(self.step(
            EnsembleKernel::MemberColumnSums,
            ds_shape,
            ds,
            Work::layer("ds", l),
        ));
        let du_shape = EnsembleShape {
            has_b: 1,
            accumulate: 0,
            b_offset: r.len() as u32,
            ..sums
        };
        let du = [
            Slot::Dz(l),
            Slot::Params(r_at, rs),
            Slot::Unused,
            Slot::Unused,
            Slot::ProductGrad(i),
            Slot::Unused,
        ];
        ops.push(self.step(
            EnsembleKernel::MemberScale,
            du_shape,
            du,
            Work::layer("dZ ⊙ s", l),
        ));
        ops
    }
}
