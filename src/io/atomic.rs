//! Files that appear at their path whole or not at all.

use crate::error::{Error, Result};
use std::path::Path;

/// Writes `contents` to `path` through a temporary file in the same folder,
/// synced before the rename, so `path` holds either the old or the new
/// contents, never a part.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let mut file = AtomicFile::create(path)?;
    use std::io::Write;
    file.write_all(contents).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    file.finish()
}

/// A file written a part at a time that appears at its path whole, or
/// not at all ([`write_atomic`] for contents too large to hold: streamed
/// predictions). It is a temporary file in the same folder until
/// [`finish`](Self::finish) syncs it and renames it into place; dropped
/// before that, it is deleted and `path` keeps what it held.
pub struct AtomicFile {
    path: std::path::PathBuf,
    dir: std::path::PathBuf,
    file: std::io::BufWriter<tempfile::NamedTempFile>,
}

impl AtomicFile {
    /// A new file for `path`, empty.
    pub fn create(path: &Path) -> Result<AtomicFile> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let mut builder = tempfile::Builder::new();
        // The file is renamed into place, so create it as `File::create`
        // would (0o666 less the umask), not private to its owner as
        // temporary files are.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let file = builder.tempfile_in(&dir).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(AtomicFile {
            path: path.to_path_buf(),
            dir,
            file: std::io::BufWriter::new(file),
        })
    }

    /// Syncs what was written and puts it at its path.
    pub fn finish(self) -> Result<()> {
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let file = self.file.into_inner().map_err(|e| io(e.into_error()))?;
        file.as_file().sync_all().map_err(io)?;
        file.persist(&self.path).map_err(|e| io(e.error))?;
        // The rename reaches the disk with the folder's entry: sync the
        // folder too, so that a power cut after we return leaves the new
        // file, not the old one. Best effort: some file systems refuse to
        // sync a folder, and the file is in place whatever they say.
        #[cfg(unix)]
        if let Ok(folder) = std::fs::File::open(&self.dir) {
            let _ = folder.sync_all();
        }
        Ok(())
    }
}

impl std::io::Write for AtomicFile {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.file.write(bytes)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}
