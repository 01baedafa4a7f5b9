//! Writing a file so that readers see the old content or the new, never a
//! part, and a crash or power loss keeps one of the two: the bytes go to
//! a temporary file in the same folder (a fresh random name, so concurrent
//! writers never share one), the file is flushed to disk (`fsync`), renamed
//! over the target, and the folder is flushed so the rename itself is
//! durable. Every writer of the workspace that must not leave a torn file
//! (checkpoints, exports, plots, results, synthetic data, xtask's tables)
//! calls this crate.
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("results.json");
//! ssl_files::write_atomic(&path, b"{}")?;
//! assert_eq!(std::fs::read(&path)?, b"{}");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Architecture Invariant: depends on nothing of the workspace and links no
//! libtorch (xtask uses it too).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically and durably (see the crate docs).
/// Errors name the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_with(path, |tmp| {
        let mut f = File::create(tmp)?;
        f.write_all(bytes)
    })
}

/// Replaces `path` atomically and durably with what `write` puts at the
/// temporary path it is given (for writers that only take a path, such as
/// libtorch's `.npy` writer). Nothing is left behind when `write` fails.
pub fn replace_with(path: &Path, write: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    let named = |e: io::Error, what: &str| {
        io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
    };
    let dir = folder_of(path);
    let name = path
        .file_name()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a file path", path.display()),
            )
        })?
        .to_string_lossy()
        .into_owned();
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(|e| named(e, "cannot create a temporary file beside"))?;
    write(tmp.path()).map_err(|e| named(e, "cannot write"))?;
    File::open(tmp.path())
        .and_then(|f| f.sync_all())
        .map_err(|e| named(e, "cannot flush"))?;
    tmp.persist(path)
        .map_err(|e| named(e.error, "cannot rename into place"))?;
    sync_folder(&dir).map_err(|e| named(e, "cannot flush the folder of"))
}

fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Flushes a folder's entries (the rename) to disk. Folders cannot be
/// opened as files on Windows; there the rename is as durable as the OS makes it.
fn sync_folder(dir: &Path) -> io::Result<()> {
    if cfg!(unix) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_content_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.json"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.bin");
        write_atomic(&path, b"kept").unwrap();
        let err = replace_with(&path, |_| Err(io::Error::other("disk full"))).unwrap_err();
        assert!(err.to_string().contains("b.bin"), "{err}");
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"kept");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/c.txt");
        let err = write_atomic(&path, b"x").unwrap_err();
        assert!(err.to_string().contains("c.txt"), "{err}");
    }
}
