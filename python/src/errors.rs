//! The library's errors as Python's exceptions, and panics caught before
//! they reach Python.

use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use retroprop::Error;
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// `error` as the exception a Python user expects, with the message the
/// program prints after `error: `: bad input and settings are
/// `ValueError`, a file that cannot be read or written `OSError`
/// (`FileNotFoundError` for one that is not there), and what
/// the machine or the run decides (no GPU, a lost device, divergence, a
/// rank) `RuntimeError`, whose message says what to do.
pub fn to_py(error: Error) -> PyErr {
    let message = error.to_string();
    match error {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(message)
        }
        Error::Io { .. } => PyOSError::new_err(message),
        Error::NoAdapter(_)
        | Error::Blas { .. }
        | Error::Gpu(_)
        | Error::Diverged { .. }
        | Error::Rank { .. }
        | Error::TooLarge(_) => PyRuntimeError::new_err(message),
        _ => PyValueError::new_err(message),
    }
}

/// A panic's payload as a `RuntimeError` (pyo3's own `PanicException`
/// derives from `BaseException`, which `except Exception` does not catch).
pub fn panic_to_py(payload: Box<dyn Any + Send>) -> PyErr {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".into());
    PyRuntimeError::new_err(format!(
        "internal error in retroprop (a Rust panic, please report it): {text}"
    ))
}

/// Runs `f`, turning a panic into a `RuntimeError`.
pub fn guard<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(panic_to_py(payload)))
}
