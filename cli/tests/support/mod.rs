//! What the program's end-to-end tests share: a scratch folder per test,
//! running the program, and a small data file.
#![allow(dead_code)]

use assert_cmd::Command;
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

pub fn retroprop() -> Command {
    Command::cargo_bin("retroprop").unwrap()
}

/// Runs and returns (exit code, stdout, stderr), asserting no panic.
pub fn run(args: &[&str]) -> (i32, String, String) {
    run_with(&[], args)
}

/// [`run`] with environment variables set.
pub fn run_with(env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let out = retroprop()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !stderr.contains("panicked"),
        "retroprop {args:?} panicked:\n{stderr}"
    );
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

pub fn ok(args: &[&str]) -> String {
    let (code, stdout, stderr) = run(args);
    assert_eq!(code, 0, "retroprop {args:?} failed:\n{stderr}");
    stdout
}

/// A failing run: exit code `code`, and stderr mentions every part.
pub fn fails(args: &[&str], code: i32, parts: &[&str]) {
    fails_with(&[], args, code, parts);
}

/// [`fails`] with environment variables set.
pub fn fails_with(env: &[(&str, &str)], args: &[&str], code: i32, parts: &[&str]) {
    let (got, _, stderr) = run_with(env, args);
    assert_eq!(
        got, code,
        "retroprop {args:?}: exit code {got}, stderr:\n{stderr}"
    );
    for part in parts {
        assert!(
            stderr.contains(part),
            "retroprop {args:?}: stderr does not mention `{part}`:\n{stderr}"
        );
    }
}

/// Three classes from two features, with a header row.
pub fn classes_csv(dir: &Dir) -> PathBuf {
    let mut text = String::from("a,b,label\n");
    for (i, (x, y)) in random(120, -1.0, 1.0, 3)
        .chunks(2)
        .map(|p| (p[0], p[1]))
        .enumerate()
    {
        let label = if x + y > 0.5 {
            2
        } else if x > y {
            1
        } else {
            0
        };
        text += &format!("{x},{y},{label}\n");
        let _ = i;
    }
    dir.write("classes.csv", &text)
}

/// `n` values uniform in [lo, hi) from `seed`: tests/common's `random`, for
/// test binaries that do not include that module.
fn random(n: usize, lo: f32, hi: f32, seed: u64) -> Vec<f32> {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// A failing run: status 1, one line on stderr, mentioning every part.
pub fn refused(env: &[(&str, &str)], args: &[&str], parts: &[&str]) {
    let out = retroprop()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "retroprop {args:?} {env:?}: status {:?}, stderr:\n{stderr}",
        out.status
    );
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "retroprop {args:?} {env:?}: not one line:\n{stderr}"
    );
    for part in parts {
        assert!(
            stderr.contains(part),
            "retroprop {args:?} {env:?}: stderr does not mention `{part}`:\n{stderr}"
        );
    }
}

/// The summary's validation accuracy, in percent.
pub fn accuracy(summary: &str) -> f64 {
    let at = summary
        .find("validation accuracy ")
        .expect("a validation accuracy")
        + 20;
    summary[at..].split('%').next().unwrap().parse().unwrap()
}
