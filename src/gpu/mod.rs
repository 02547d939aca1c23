//! The wgpu backend.

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::Mlp;
use crate::train::{Backend, EpochLoss, TrainConfig};

pub(crate) struct GpuBackend;

impl GpuBackend {
    pub(crate) fn new(
        _mlp: &Mlp,
        _params: Vec<f32>,
        _config: &TrainConfig,
        _hardware_only: bool,
    ) -> Result<GpuBackend> {
        Err(Error::NoAdapter("not built yet".into()))
    }
}

impl Backend for GpuBackend {
    fn name(&self) -> String {
        unreachable!()
    }
    fn parameters(&mut self) -> Result<Vec<f32>> {
        unreachable!()
    }
    fn set_parameters(&mut self, _: &[f32]) -> Result<()> {
        unreachable!()
    }
    fn begin_fit(&mut self, _: &Dataset) -> Result<()> {
        unreachable!()
    }
    fn train_epoch(
        &mut self,
        _: &Dataset,
        _: &[u32],
        _: usize,
        _: u64,
        _: f64,
    ) -> Result<EpochLoss> {
        unreachable!()
    }
    fn evaluate(&mut self, _: &Dataset) -> Result<(f64, Option<usize>)> {
        unreachable!()
    }
    fn predict(&mut self, _: &[f32]) -> Result<Vec<f32>> {
        unreachable!()
    }
}
