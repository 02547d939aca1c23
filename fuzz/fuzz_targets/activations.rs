//! `Activation::parse_list` (`--activations`): the first byte is the
//! number of layers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use retroprop::Activation;

fuzz_target!(|data: &[u8]| {
    let Some((&layers, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if let Ok(list) = Activation::parse_list(text, usize::from(layers)) {
        assert_eq!(list.len(), usize::from(layers));
        // What is parsed prints back as something that parses the same.
        for a in list {
            assert_eq!(a.to_string().parse::<Activation>(), Ok(a));
        }
    }
});
