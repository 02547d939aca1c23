//! `NativeModel`: a trained model (the library's `SavedModel`), its model
//! file and ONNX bytes, its state dict, and predictions from it.

use crate::errors::{guard, to_py};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use retroprop::Precision;
use retroprop::io::onnx::{OnnxOptions, onnx_bytes};
use retroprop::io::{
    RunNotes, SavedModel, StateValues, noted_model_bytes, parse_model, state_dict,
};
use retroprop::{Device, Error, TrainConfig, Trainer};
use std::path::{Path, PathBuf};

/// A trained network with what it needs to predict: layer sizes,
/// activations, loss, parameters, standardisation.
#[pyclass(module = "retroprop._retroprop", frozen)]
pub struct NativeModel {
    saved: SavedModel,
    /// The precision it was trained in (`retroprop.precision`), when known.
    precision: Option<Precision>,
}

impl NativeModel {
    /// A model trained in `precision`.
    pub fn trained(saved: SavedModel, precision: Precision) -> NativeModel {
        NativeModel::with_precision(saved, Some(precision))
    }

    /// A model trained in `precision`, when known.
    pub fn with_precision(saved: SavedModel, precision: Option<Precision>) -> NativeModel {
        NativeModel { saved, precision }
    }
}

/// A dense layer's weight `[out, in]` and bias `[out]` as arrays.
type DenseLayer<'py> = (Bound<'py, PyAny>, Bound<'py, PyArray1<f32>>);

#[pymethods]
impl NativeModel {
    /// A model from a model file's bytes (`retroprop train --save`,
    /// `Model.save`); `name` names it in errors.
    #[staticmethod]
    fn from_bytes(bytes: &[u8], name: PathBuf) -> PyResult<NativeModel> {
        guard(|| {
            let loaded = parse_model(bytes, &name).map_err(to_py)?;
            let precision = loaded.precision;
            let saved = loaded.complete(&name).map_err(to_py)?;
            Ok(NativeModel { saved, precision })
        })
    }

    /// The model file's bytes (safetensors).
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        guard(|| {
            let notes = RunNotes {
                precision: self.precision,
                ..RunNotes::default()
            };
            let bytes =
                noted_model_bytes(Path::new("model"), &self.saved, &notes).map_err(to_py)?;
            Ok(PyBytes::new(py, &bytes))
        })
    }

    /// The model as an ONNX file's bytes (`retroprop::io::onnx`).
    #[pyo3(signature = (probabilities, both_classes = false))]
    fn onnx_bytes<'py>(
        &self,
        py: Python<'py>,
        probabilities: bool,
        both_classes: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        guard(|| {
            let options = OnnxOptions {
                probabilities,
                both_classes,
            };
            let bytes = onnx_bytes(&self.saved, &options).map_err(to_py)?;
            Ok(PyBytes::new(py, &bytes))
        })
    }

    /// The model file's tensors by name (`retroprop::io::state_dict`):
    /// `{"layers.{i}.weight": [out, in], "layers.{i}.bias": [out]}` as
    /// float32 arrays for a plain network (`torch.nn.Linear`'s layout);
    /// rtdl's `ResNet` names for a residual one, BatchNorm's running
    /// statistics included (`num_batches_tracked` a 0-d int64 array).
    fn state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        guard(|| {
            let d = PyDict::new(py);
            for (name, shape, values) in state_dict(&self.saved) {
                match values {
                    StateValues::F32(values) => {
                        d.set_item(name, PyArray1::from_vec(py, values).reshape(shape)?)?
                    }
                    StateValues::I64(count) => d.set_item(
                        name,
                        numpy::PyArray0::<i64>::from_owned_array(py, numpy::ndarray::arr0(count)),
                    )?,
                }
            }
            Ok(d)
        })
    }

    /// Each dense layer's `(weight [out, in], bias [out])`, input side
    /// first, whatever the network's other kinds (a residual network's
    /// normalisations are not among them): scikit-learn's `coefs_` and
    /// `intercepts_`, transposed.
    fn dense_layers<'py>(&self, py: Python<'py>) -> PyResult<Vec<DenseLayer<'py>>> {
        let mlp = &self.saved.mlp;
        if let Some(spec) = mlp.tabm_spec() {
            return Err(PyValueError::new_err(format!(
                "a TabM network ({} members, {}) has no plain dense layers: read its tensors from state_dict()",
                spec.k, spec.arch
            )));
        }
        (mlp.layers().iter().enumerate())
            .map(|(l, layer)| {
                let weight = PyArray1::from_slice(py, &self.saved.params[mlp.weight_range(l)])
                    .reshape([layer.outputs, layer.inputs])?
                    .into_any();
                let bias = PyArray1::from_slice(py, &self.saved.params[mlp.bias_range(l)]);
                Ok((weight, bias))
            })
            .collect()
    }

    /// The flat parameters, in the library's layout (`Mlp::weight_range`,
    /// `Mlp::norm_ranges`): what a warm start begins from.
    #[getter]
    fn flat_parameters<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        PyArray1::from_slice(py, &self.saved.params)
    }

    /// Layer sizes, input first.
    #[getter]
    fn sizes(&self) -> Vec<usize> {
        self.saved.mlp.sizes()
    }

    /// One activation name per layer.
    #[getter]
    fn activations(&self) -> Vec<String> {
        self.saved
            .mlp
            .layers()
            .iter()
            .map(|l| l.activation.to_string())
            .collect()
    }

    /// The loss it was trained with.
    #[getter]
    fn loss(&self) -> String {
        self.saved.loss.to_string()
    }

    /// The standardisation applied before the network, `(mean, std)`, or
    /// `None`.
    #[getter]
    fn standardization(&self) -> Option<(Vec<f32>, Vec<f32>)> {
        self.saved
            .standardizer
            .as_ref()
            .map(|s| (s.mean.clone(), s.std.clone()))
    }

    /// The outputs for `x` float32 `[rows, inputs]`, on `device`, after
    /// the saved standardisation: the network's outputs (logits for the
    /// classification losses), or with `probabilities` what the loss
    /// implies (softmax, sigmoid), as `retroprop predict` prints them.
    #[pyo3(signature = (x, device, probabilities))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        device: &str,
        probabilities: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        guard(|| {
            let device: Device = device.parse().map_err(PyValueError::new_err)?;
            let mut rows = x
                .as_slice()
                .map_err(|_| PyValueError::new_err("x must be C-contiguous float32"))?
                .to_vec();
            let (n, features) = (x.shape()[0], x.shape()[1]);
            let saved = &self.saved;
            let width = saved.mlp.outputs();
            let out = py
                .detach(|| -> retroprop::Result<Vec<f32>> {
                    if features != saved.mlp.inputs() {
                        return Err(Error::Shape {
                            what: "features of the inputs (network inputs)".into(),
                            expected: saved.mlp.inputs(),
                            got: features,
                        });
                    }
                    if let Some(s) = &saved.standardizer {
                        s.apply_rows(&mut rows)?;
                    }
                    let config = TrainConfig::default().loss(saved.loss).device(device);
                    let mut trainer =
                        Trainer::with_parameters(saved.mlp.clone(), saved.params.clone(), config)?;
                    // Evaluation mode: BatchNorm by the file's running statistics.
                    trainer.set_buffers(&saved.buffers)?;
                    let out = trainer.predict(&rows)?;
                    Ok(if probabilities {
                        saved.loss.probabilities(&out, width)
                    } else {
                        out
                    })
                })
                .map_err(to_py)?;
            Ok(PyArray1::from_vec(py, out).reshape([n, width])?.into_any())
        })
    }
}
