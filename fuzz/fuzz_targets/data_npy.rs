//! `Dataset::from_npy_bytes`: the first byte picks the number of target
//! columns (1 to 4) and whether they are class labels; the rest is the
//! array.
#![no_main]

use libfuzzer_sys::fuzz_target;
use retroprop::Dataset;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, file)) = data.split_first() else {
        return;
    };
    let targets = usize::from(mode & 3) + 1;
    let classes = mode & 4 != 0;
    if let Ok(set) = Dataset::from_npy_bytes(file, Path::new("fuzz.npy"), targets, classes) {
        assert_eq!(set.x().len(), set.rows() * set.features());
        assert!(set.x().iter().all(|v| v.is_finite()));
        assert_eq!(set.target_width(), if classes { 1 } else { targets });
    }
});
