//! One member of a GPU members run as a [`Backend`]: what its lone
//! trainer asks of a backend (its parameters, state, an evaluation, a
//! prediction) answered by the run's engine, so that `train::Members`
//! keeps each member's life (schedule, early stopping, checkpoints) in
//! its own `Trainer` while every member's steps run together.

use super::{GpuMembers, MemberPlan};
use crate::backend::{Backend, BatchShare, DeviceData, StepsReport, checks};
use crate::data::Dataset;
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex, MutexGuard};

/// Member `member` of the run `engine` holds.
pub struct MemberView {
    engine: Arc<Mutex<GpuMembers>>,
    member: usize,
    uploads: u64,
}

impl MemberView {
    /// Every member of `engine`, as a backend each.
    pub fn every(engine: &Arc<Mutex<GpuMembers>>) -> Vec<MemberView> {
        let count = lock(engine).len();
        (0..count)
            .map(|member| MemberView {
                engine: engine.clone(),
                member,
                uploads: 0,
            })
            .collect()
    }
}

/// The engine, whatever an earlier panic left (a panicked call's member
/// is lost with its trainer; the others' state is on the device).
pub fn lock(engine: &Mutex<GpuMembers>) -> MutexGuard<'_, GpuMembers> {
    engine.lock().unwrap_or_else(|e| e.into_inner())
}

fn alone() -> Error {
    Error::Config(
        "a member of a GPU members run steps with the others (train::Members): its phases \
         (forward_backward, gradients, update) are not available alone"
            .into(),
    )
}

impl Backend for MemberView {
    fn name(&self) -> String {
        lock(&self.engine).name()
    }

    fn parameters(&mut self) -> Result<Vec<f32>> {
        lock(&self.engine).parameters(self.member)
    }

    fn set_parameters(&mut self, params: &[f32]) -> Result<()> {
        lock(&self.engine).set_parameters(self.member, params)
    }

    fn optimizer_state(&mut self) -> Result<(Vec<f32>, u64)> {
        lock(&self.engine).optimizer_state(self.member)
    }

    /// Empty: the members' engine runs plain networks only so far.
    fn buffers(&mut self) -> Result<Vec<f32>> {
        Ok(Vec::new())
    }

    fn set_buffers(&mut self, buffers: &[f32]) -> Result<()> {
        crate::backend::checks::length("buffers of the network", 0, buffers.len())
    }

    fn set_optimizer_state(&mut self, state: &[f32], step: u64) -> Result<()> {
        lock(&self.engine).set_optimizer_state(self.member, state, step)
    }

    fn upload<'a>(&mut self, data: &'a Dataset) -> Result<DeviceData<'a>> {
        self.uploads += 1;
        Ok(DeviceData::new(self.uploads, data))
    }

    fn forward_backward(&mut self, _: &DeviceData<'_>, _: BatchShare<'_>) -> Result<f64> {
        Err(alone())
    }

    fn gradients(&mut self) -> Result<Vec<f32>> {
        Err(alone())
    }

    fn set_gradients(&mut self, _: &[f32]) -> Result<()> {
        Err(alone())
    }

    fn update(&mut self, _: f64) -> Result<()> {
        Err(alone())
    }

    /// This member's steps alone (the others take none): a member's
    /// trainer driven on its own. `train::Members` runs every member's
    /// together instead ([`GpuMembers::train`]).
    fn train_steps(
        &mut self,
        data: &DeviceData<'_>,
        order: &[u32],
        batch_size: usize,
        max_steps: u64,
        lr: f64,
    ) -> Result<StepsReport> {
        data.check(Some(self.uploads))?;
        let mut engine = lock(&self.engine);
        checks::steps(order, data.dataset().rows(), batch_size)?;
        if batch_size != engine.batch_rows() {
            return Err(Error::Config(format!(
                "a member of a GPU members run steps in batches of {} rows, not {batch_size}",
                engine.batch_rows()
            )));
        }
        let sets = vec![data.dataset(); engine.len()];
        engine.upload(&sets)?;
        let plan = MemberPlan {
            member: self.member,
            order,
            max_steps,
            lr,
        };
        engine.train(&[plan])?.remove(0)
    }

    fn evaluate(&mut self, data: &Dataset) -> Result<(f64, Option<usize>)> {
        lock(&self.engine).evaluate_member(self.member, data)
    }

    fn predict(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        Ok(lock(&self.engine).predict_all(x)?.swap_remove(self.member))
    }

    fn memory_bytes(&self) -> u64 {
        let engine = lock(&self.engine);
        engine.memory_bytes() / engine.len().max(1) as u64
    }
}
