//! `io::parse_model`, then what the program does with a model it loaded:
//! complete it and build its network.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.safetensors");
    if let Ok(model) = retroprop::io::parse_model(data, path) {
        let count: usize = model.sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
        assert_eq!(model.params.len(), count);
        if let Ok(saved) = model.complete(path) {
            assert_eq!(saved.mlp.parameter_count(), saved.params.len());
        }
    }
});
