//! `Dataset::from_csv_reader`: the first byte picks the number of target
//! columns (1 to 4) and whether they are class labels; the rest is the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use retroprop::{Dataset, Targets};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, text)) = data.split_first() else {
        return;
    };
    let targets = usize::from(mode & 3) + 1;
    let classes = mode & 4 != 0;
    if let Ok(set) = Dataset::from_csv_reader(text, Path::new("fuzz.csv"), targets, classes) {
        assert_eq!(set.x().len(), set.rows() * set.features());
        assert!(set.x().iter().all(|v| v.is_finite()));
        if let Targets::Values { values, width } = set.targets() {
            assert_eq!(values.len(), set.rows() * width);
        }
    }
});
