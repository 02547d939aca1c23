//! Reference values made by a committed script (dev/*_fixtures.py) into
//! tests/fixtures/*.safetensors, in float64, and the comparison with them.

use safetensors::SafeTensors;

/// A fixture file, read once.
pub struct Fixture {
    name: &'static str,
    bytes: Vec<u8>,
}

impl Fixture {
    /// tests/fixtures/`name`.safetensors, made by `script`.
    pub fn load(name: &'static str, script: &str) -> Fixture {
        let path = format!(
            "{}/tests/fixtures/{name}.safetensors",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e} (made by {script})"));
        Fixture { name, bytes }
    }

    /// A float64 tensor's values and shape.
    pub fn get(&self, tensor: &str) -> (Vec<f64>, Vec<usize>) {
        let tensors = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = tensors
            .tensor(tensor)
            .unwrap_or_else(|e| panic!("{}: {tensor}: {e}", self.name));
        let values = t
            .data()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (values, t.shape().to_vec())
    }

    /// A text of the file's metadata, written beside the tensors.
    pub fn metadata(&self, key: &str) -> String {
        let (_, metadata) = SafeTensors::read_metadata(&self.bytes).unwrap();
        metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get(key).cloned())
            .unwrap_or_else(|| panic!("{}: no metadata {key}", self.name))
    }

    /// A float64 tensor's values.
    pub fn values(&self, tensor: &str) -> Vec<f64> {
        self.get(tensor).0
    }
}

/// Each value within `tolerance` of the reference's, relative to the
/// reference tensor's largest value.
pub fn assert_close_to(what: &str, ours: &[f64], reference: &[f64], tolerance: f64) {
    assert_eq!(ours.len(), reference.len(), "{what}: length");
    let scale = reference.iter().fold(1e-300f64, |m, v| m.max(v.abs()));
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        assert!(
            (a - b).abs() <= tolerance * scale,
            "{what}[{i}]: ours {a}, reference {b} (scale {scale})"
        );
    }
}
