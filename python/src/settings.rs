//! Settings by name, parsed by the library's own parsers: one parser per
//! setting serves the program, the page and this package.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use retroprop::{Activation, Device, Init, Loss, LrSchedule, Optimizer};

/// `optimizer_defaults(name)`: the optimizer's options, by torch's names,
/// in the order of torch's constructor, each with its default as text.
#[pyfunction]
pub fn optimizer_defaults(name: &str) -> PyResult<Vec<(String, String)>> {
    let optimizer = Optimizer::with_name(name).map_err(crate::errors::to_py)?;
    Ok(optimizer
        .options()
        .into_iter()
        .map(|option| {
            let value = optimizer.option(option).unwrap_or_default();
            (option.to_string(), value)
        })
        .collect())
}

/// `check_setting(kind, text)`: `text` parsed as a setting of `kind`
/// (`activation`, `loss`, `lr_schedule`, `init`, `device`), written back
/// in its canonical form; a `ValueError` with the parser's message when
/// it is not one.
#[pyfunction]
pub fn check_setting(kind: &str, text: &str) -> PyResult<String> {
    let parsed = match kind {
        "activation" => text.parse::<Activation>().map(|v| v.to_string()),
        "loss" => text.parse::<Loss>().map(|v| v.to_string()),
        "lr_schedule" => text.parse::<LrSchedule>().map(|v| v.to_string()),
        "init" => text.parse::<Init>().map(|_| text.trim().to_string()),
        "device" => text.parse::<Device>().map(|v| v.to_string()),
        other => return Err(PyValueError::new_err(format!("no setting kind `{other}`"))),
    };
    parsed.map_err(PyValueError::new_err)
}
