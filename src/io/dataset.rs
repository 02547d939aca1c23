//! Data sets from safetensors files: tensors `x` and `y`
//! ([`Dataset::from_safetensors`]).

use super::open_safetensors;
#[cfg(not(target_arch = "wasm32"))]
use super::read_file;
use crate::data::{Dataset, Targets};
use crate::error::{Error, Result};
use safetensors::tensor::{Dtype, TensorView};
use std::path::Path;

/// Values of any integer or float tensor as f64.
fn numbers(view: &TensorView, name: &str, path: &Path) -> Result<Vec<f64>> {
    let d = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => d
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        Dtype::F64 => d
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        Dtype::I64 => d
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        Dtype::I32 => d
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        Dtype::U8 => d.iter().map(|&b| b as f64).collect(),
        other => {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                message: format!("tensor {name} is {other:?}; expected F32, F64, I64, I32 or U8"),
            });
        }
    })
}

impl Dataset {
    /// Reads tensors `x` (`[rows, features]`) and `y` (`[rows]` class
    /// indices, or `[rows, targets]` values) from a safetensors file. With
    /// `classes`, `y` must hold non-negative integers.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_safetensors(path: impl AsRef<Path>, classes: bool) -> Result<Dataset> {
        let path = path.as_ref();
        Dataset::from_safetensors_bytes(&read_file(path)?, path, classes)
    }

    /// [`from_safetensors`](Self::from_safetensors) on a file's bytes;
    /// `path` names it in errors.
    pub fn from_safetensors_bytes(buffer: &[u8], path: &Path, classes: bool) -> Result<Dataset> {
        let parse = |message: String| Error::Parse {
            path: path.to_path_buf(),
            message,
        };
        let (_, file) = open_safetensors(buffer, path)?;
        let x = file
            .tensor("x")
            .map_err(|_| parse("tensor x is missing (expected x [rows, features] and y)".into()))?;
        let y = file
            .tensor("y")
            .map_err(|_| parse("tensor y is missing (expected x [rows, features] and y)".into()))?;
        let [rows, features] = x.shape()[..] else {
            return Err(parse(format!(
                "tensor x has shape {:?}, expected [rows, features]",
                x.shape()
            )));
        };
        let (y_rows, width) = match y.shape() {
            [r] => (*r, 1),
            [r, w] => (*r, *w),
            other => {
                return Err(parse(format!(
                    "tensor y has shape {other:?}, expected [rows] or [rows, targets]"
                )));
            }
        };
        if y_rows != rows {
            return Err(parse(format!(
                "tensor y has {y_rows} rows, tensor x has {rows}"
            )));
        }
        let xv: Vec<f32> = numbers(&x, "x", path)?
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let yv = numbers(&y, "y", path)?;
        let targets = if classes {
            if width != 1 {
                return Err(parse(format!(
                    "class labels need y of shape [rows], got {:?}",
                    y.shape()
                )));
            }
            let labels = yv
                .iter()
                .enumerate()
                .map(|(row, &v)| {
                    if v >= 0.0 && v.fract() == 0.0 && v <= u32::MAX as f64 {
                        Ok(v as u32)
                    } else {
                        Err(parse(format!(
                            "tensor y, row {row}: class label {v} is not a non-negative integer"
                        )))
                    }
                })
                .collect::<Result<_>>()?;
            Targets::Classes(labels)
        } else {
            Targets::Values {
                values: yv.iter().map(|&v| v as f32).collect(),
                width,
            }
        };
        Dataset::new(xv, features, targets).map_err(|e| match e {
            Error::NonFinite {
                what,
                row,
                column,
                value,
            } => parse(format!(
                "tensor {}, row {row}, column {column}: {value} is not finite",
                if what == "inputs" { "x" } else { "y" }
            )),
            other => other,
        })
    }
}
