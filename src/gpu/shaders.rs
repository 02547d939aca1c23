//! The WGSL every kernel module starts with, read by the matmul tilings
//! (which add their own preamble before it) and by the pipelines.

use super::codes;

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
