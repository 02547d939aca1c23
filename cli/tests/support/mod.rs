//! What the program's end-to-end tests share: a scratch folder per test.
#![allow(dead_code)]

use std::path::PathBuf;

/// A scratch folder for one test, removed when dropped.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(name: &str) -> Dir {
        // module_path!() starts with the test binary's crate: the binaries'
        // folders stay apart.
        let binary = module_path!().split("::").next().unwrap_or("tests");
        let dir =
            std::env::temp_dir().join(format!("retroprop-{binary}-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The path of `name`, as a command-line argument.
    pub fn arg(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }

    /// Writes `text` to `name`; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
