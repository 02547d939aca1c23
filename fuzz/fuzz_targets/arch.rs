//! `model::parse_sizes` (`--arch`), then the network and its memory check,
//! as the program does before drawing parameters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use retroprop::{Activation, Mlp};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(sizes) = retroprop::model::parse_sizes(text) {
        assert!(sizes.len() >= 2 && sizes.iter().all(|&s| s >= 1));
        if let Ok(mlp) = Mlp::new(&sizes, Activation::Relu, Activation::Identity) {
            assert_eq!(mlp.sizes(), sizes);
            let _ = mlp.check_training_memory(Some(32), 2);
        }
    }
});
