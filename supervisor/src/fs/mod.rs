//! The file-system seam under every file weir writes durably: the file
//! dead-letter queue ([`FileDlqWriter`](crate::dead_letter::FileDlqWriter)), the
//! checkpoint store (`weir-runtime`) and the file sink (`weir-operators`).
//!
//! Each of them makes its changes through [`Fs`] and [`FsFile`], so that a test
//! can fail or "crash" at any one of them (the `fault-injection` feature's
//! `FaultFs`). It lives in this crate because it is the one the other two depend
//! on. Production code uses [`RealFs`], a zero-sized type whose methods are the
//! `std::fs` calls; the indirection (one virtual call per system call, never per
//! element) costs nothing next to the system call.
//!
//! Not a stable API: it is public for weir's own crates.
//!
//! Only the operations that change what is on disk are fault points (open,
//! write, sync, set_len, rename, directory sync, remove); reads, seeks and
//! lengths go to the real file unchanged: they change nothing a crash could tear.

#[cfg(any(test, feature = "fault-injection"))]
mod fault;
mod real;

use std::fmt;
use std::fs::TryLockError;
use std::io::{self, Read, Seek, Write};
use std::path::Path;

#[cfg(any(test, feature = "fault-injection"))]
pub use fault::{FaultFs, Mode};
pub use real::RealFs;

/// How [`Fs::open`] opens a file. Every mode opens it for reading and writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// A new file; fails with `AlreadyExists` if there is one.
    CreateNew,
    /// Created, or emptied if it exists.
    Truncate,
    /// Created if missing, its contents kept; the cursor at the start.
    Keep,
    /// Created if missing, its contents kept; every write appends.
    Append,
    /// An existing file (`NotFound` otherwise), its contents kept.
    Existing,
}

/// Every operation that changes a directory weir writes durable files into.
pub trait Fs: fmt::Debug + Send + Sync {
    /// Opens `path` as `how` says.
    fn open(&self, path: &Path, how: Open) -> io::Result<Box<dyn FsFile>>;

    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Removes the file `path`.
    fn remove(&self, path: &Path) -> io::Result<()>;

    /// Creates `path` for writing: a new file if `new` (failing if it exists),
    /// otherwise created or truncated.
    fn create(&self, path: &Path, new: bool) -> io::Result<Box<dyn FsFile>> {
        self.open(path, if new { Open::CreateNew } else { Open::Truncate })
    }
}

/// An open file. Reading and seeking go to the file as they are; writes,
/// syncs and [`set_len`](Self::set_len) are fault points.
pub trait FsFile: Read + Write + Seek + Send + Sync {
    /// Makes the data written durable (`fdatasync`, as `File::sync_data`).
    fn sync_data(&mut self) -> io::Result<()>;

    /// Makes the data and the metadata durable (`fsync`, as `File::sync_all`).
    fn sync_all(&mut self) -> io::Result<()>;

    /// Cuts (or extends) the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;

    /// The file's length now.
    fn len(&self) -> io::Result<u64>;

    /// Whether the file is empty now.
    fn is_empty(&self) -> io::Result<bool> {
        self.len().map(|len| len == 0)
    }

    /// Takes the exclusive advisory lock, without waiting (`File::try_lock`).
    fn try_lock(&self) -> Result<(), TryLockError>;
}

/// The directory `path` is in: its parent, or `.` for a bare name.
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `error` with `path` in its message (`<path>: <error>`), its kind kept and
/// itself as the source: what a caller needs to learn which file failed.
pub fn at_path(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(
        error.kind(),
        PathError {
            path: path.to_path_buf(),
            source: error,
        },
    )
}

/// An I/O error on a named file.
#[derive(Debug)]
struct PathError {
    path: std::path::PathBuf,
    source: io::Error,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for PathError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_at_a_path_names_it_and_keeps_kind_and_cause() {
        let e = at_path(
            Path::new("/d/x.dlq"),
            io::Error::from(io::ErrorKind::StorageFull),
        );
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert!(e.to_string().starts_with("/d/x.dlq: "), "{e}");
        let inner = e.get_ref().and_then(std::error::Error::source);
        assert!(inner.is_some());
        assert_eq!(parent_dir(Path::new("x")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/d/x")), Path::new("/d"));
    }
}
