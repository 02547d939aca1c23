//! `Dataset::from_safetensors_bytes`: the first byte says whether `y` holds
//! class labels; the rest is the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use retroprop::Dataset;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, file)) = data.split_first() else {
        return;
    };
    let path = Path::new("fuzz.safetensors");
    if let Ok(set) = Dataset::from_safetensors_bytes(file, path, mode & 1 != 0) {
        assert_eq!(set.x().len(), set.rows() * set.features());
    }
});
