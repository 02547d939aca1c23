//! `io::parse_checkpoint`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok((model, _, checkpoint)) =
        retroprop::io::parse_checkpoint(data, Path::new("fuzz.safetensors"))
    {
        assert_eq!(checkpoint.params.len(), model.params.len());
        assert!(checkpoint.optimizer_state.iter().all(|v| v.is_finite()));
    }
});
