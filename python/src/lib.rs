//! `retroprop._retroprop`, the native half of the `retroprop` Python
//! package: a thin front over the library (DESIGN.md, "Fronts"). Settings
//! are parsed by the library's own `FromStr` and option setters; errors
//! become Python exceptions (errors.rs); training runs on a thread of its
//! own with the GIL released, and Ctrl-C reaches it through the library's
//! `StopFlag` (worker.rs). The estimators and the torch-like API are
//! Python, in `python/retroprop/`.

mod errors;
mod members;
mod model;
mod run_args;
mod settings;
mod sources;
mod trainer;
mod worker;

use pyo3::prelude::*;

/// The native module: `NativeTrainer`, `NativeModel`, `NativeMembers`,
/// `NativeMembersModel`, `NativeSource` (rows read a part at a time), and the parsers the
/// Python side checks settings with.
#[pymodule]
fn _retroprop(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<trainer::NativeTrainer>()?;
    m.add_class::<model::NativeModel>()?;
    m.add_class::<members::NativeMembers>()?;
    m.add_class::<members::NativeMembersModel>()?;
    m.add_class::<sources::NativeSource>()?;
    m.add_function(wrap_pyfunction!(settings::optimizer_defaults, m)?)?;
    m.add_function(wrap_pyfunction!(settings::check_setting, m)?)?;
    m.add_function(wrap_pyfunction!(worker::panic_for_test, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
