//! `Dataset::from_npz_bytes`: the first byte says whether `y` holds class
//! labels; the rest is the archive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use retroprop::Dataset;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, file)) = data.split_first() else {
        return;
    };
    if let Ok(set) = Dataset::from_npz_bytes(file, Path::new("fuzz.npz"), mode & 1 != 0) {
        assert_eq!(set.x().len(), set.rows() * set.features());
        assert!(set.x().iter().all(|v| v.is_finite()));
    }
});
