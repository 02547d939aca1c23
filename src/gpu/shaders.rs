//! The WGSL every kernel module starts with, read by the matmul tilings
//! (which add their own preamble before it) and by the pipelines.

use super::codes;

/// The source of a kernel module: `preamble`, then what every module starts
/// with, then `body` (one of shaders/*.wgsl).
pub(crate) fn module_source(preamble: &str, body: &str) -> String {
    format!("{preamble}{}\n{body}", common_source())
}

/// What every kernel module starts with: the named codes, the common
/// helpers and the uniform `StepUniform` (shaders/common.wgsl), and the
/// activation functions (shaders/activation.wgsl).
pub(crate) fn common_source() -> String {
    format!(
        "{}{}\n{}",
        codes::wgsl(),
        include_str!("../../shaders/common.wgsl"),
        include_str!("../../shaders/activation.wgsl")
    )
}
