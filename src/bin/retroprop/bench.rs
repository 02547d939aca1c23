//! `retroprop bench`.

use crate::cli::BenchArgs;

pub fn bench(_args: BenchArgs) -> Result<(), String> {
    Err("bench: not yet".into())
}
