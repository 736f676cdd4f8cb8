//! A file source's position in a checkpoint, and the rule that decides, on a
//! restore, whether the file at the path is still the one the position is in.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Bytes at the start of a file whose CRC-32 is its fingerprint.
pub(crate) const FINGERPRINT_BYTES: usize = 1024;

/// The state version of a file source's snapshot.
pub(crate) const POSITION_VERSION: u32 = 1;

/// What a file source records at a checkpoint: where it is, and which file it is in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SourcePosition {
    /// Byte offset after the last element emitted: where reading resumes.
    pub(crate) offset: u64,
    /// Lines (or chunks) before `offset`.
    pub(crate) line: u64,
    /// The file the offset is in; `None` if the source had not opened it yet (the
    /// offset is then the one it was told to start at).
    pub(crate) identity: Option<FileIdentity>,
}

/// Which file a position is in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct FileIdentity {
    /// Device and inode (unix only; `None` elsewhere, where only the content is
    /// compared).
    pub(crate) dev_ino: Option<(u64, u64)>,
    /// The file's length when the checkpoint was taken.
    pub(crate) len: u64,
    /// How many bytes at the start of the file the fingerprint covers: at most
    /// [`FINGERPRINT_BYTES`], fewer for a shorter file.
    pub(crate) fingerprint_len: u32,
    /// CRC-32 of those bytes.
    pub(crate) fingerprint: u32,
}

/// The file as it is when the source opens it.
#[derive(Debug, Clone)]
pub(crate) struct Opened {
    pub(crate) dev_ino: Option<(u64, u64)>,
    pub(crate) len: u64,
    /// Its first bytes (at most [`FINGERPRINT_BYTES`]).
    pub(crate) head: Vec<u8>,
}

impl Opened {
    /// Reads the identity of `file`, which must be positioned at its start.
    pub(crate) fn of(file: &mut File) -> io::Result<Opened> {
        let meta = file.metadata()?;
        let mut head = Vec::with_capacity(FINGERPRINT_BYTES);
        file.by_ref()
            .take(FINGERPRINT_BYTES as u64)
            .read_to_end(&mut head)?;
        Ok(Opened {
            dev_ino: dev_ino(&meta),
            len: meta.len(),
            head,
        })
    }

    /// The identity to record at a checkpoint, with the file's length now.
    pub(crate) fn identity(&self, len: u64) -> FileIdentity {
        FileIdentity {
            dev_ino: self.dev_ino,
            len,
            fingerprint_len: self.head.len() as u32,
            fingerprint: crc32fast::hash(&self.head),
        }
    }
}

#[cfg(unix)]
pub(crate) fn dev_ino(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
pub(crate) fn dev_ino(_meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// Where a restored source starts reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resume {
    /// The same file: at the checkpointed offset and line.
    At { offset: u64, line: u64 },
    /// Another file is at the path (its device or inode differs): from its start.
    Rotated,
    /// The same file, but shorter than the offset or with other first bytes: a
    /// new file, from its start. The reason, in words.
    Truncated(String),
}

impl Resume {
    /// The rule: resume at the offset only in the same file (same device and
    /// inode where the platform has them), at least as long as the offset, whose
    /// first bytes have the fingerprint the checkpoint recorded.
    pub(crate) fn decide(saved: &SourcePosition, now: &Opened) -> Resume {
        let at = Resume::At {
            offset: saved.offset,
            line: saved.line,
        };
        let Some(id) = &saved.identity else {
            return at;
        };
        if let (Some(then), Some(now_id)) = (id.dev_ino, now.dev_ino)
            && then != now_id
        {
            return Resume::Rotated;
        }
        if now.len < saved.offset {
            return Resume::Truncated(format!(
                "it is {} bytes, shorter than the checkpointed offset {}",
                now.len, saved.offset
            ));
        }
        let covered = id.fingerprint_len as usize;
        if now.head.len() < covered || crc32fast::hash(&now.head[..covered]) != id.fingerprint {
            return Resume::Truncated(format!(
                "its first {covered} bytes differ from those at the checkpoint"
            ));
        }
        at
    }

    /// Logs a decision that starts over, naming the file.
    pub(crate) fn warn(&self, path: &Path, saved: &SourcePosition) {
        match self {
            Resume::At { .. } => {}
            Resume::Rotated => tracing::warn!(
                file = %path.display(),
                offset = saved.offset,
                "file source restored: the file was rotated (another file is at the path); \
                 reading the new file from its beginning"
            ),
            Resume::Truncated(why) => tracing::warn!(
                file = %path.display(),
                offset = saved.offset,
                "file source restored: the file was truncated or replaced ({why}); \
                 reading it from its beginning"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(dev_ino: Option<(u64, u64)>, content: &[u8]) -> Opened {
        let head = content[..content.len().min(FINGERPRINT_BYTES)].to_vec();
        Opened {
            dev_ino,
            len: content.len() as u64,
            head,
        }
    }

    fn saved(offset: u64, then: &Opened) -> SourcePosition {
        SourcePosition {
            offset,
            line: 3,
            identity: Some(then.identity(then.len)),
        }
    }

    #[test]
    fn the_same_file_grown_resumes_at_the_offset() {
        let then = opened(Some((1, 7)), b"a\nb\nc\n");
        let now = opened(Some((1, 7)), b"a\nb\nc\nd\n");
        let s = saved(4, &then);
        assert_eq!(Resume::decide(&s, &now), Resume::At { offset: 4, line: 3 });
    }

    #[test]
    fn a_fingerprint_covers_at_most_one_kib() {
        let long = vec![b'x'; 3000];
        let then = opened(Some((1, 7)), &long);
        assert_eq!(then.identity(3000).fingerprint_len, 1024);
        let mut changed_late = long.clone();
        changed_late[2000] = b'y';
        let now = opened(Some((1, 7)), &changed_late);
        assert!(matches!(
            Resume::decide(&saved(2500, &then), &now),
            Resume::At { .. }
        ));
        let mut changed_early = long;
        changed_early[10] = b'y';
        let now = opened(Some((1, 7)), &changed_early);
        assert!(matches!(
            Resume::decide(&saved(2500, &then), &now),
            Resume::Truncated(_)
        ));
    }

    #[test]
    fn shorter_than_the_offset_is_truncated() {
        let then = opened(Some((1, 7)), b"a\nb\nc\n");
        let now = opened(Some((1, 7)), b"a\n");
        let r = Resume::decide(&saved(4, &then), &now);
        assert!(
            matches!(&r, Resume::Truncated(why) if why.contains("shorter")),
            "{r:?}"
        );
    }

    #[test]
    fn other_first_bytes_are_a_new_file() {
        let then = opened(Some((1, 7)), b"a\nb\nc\n");
        let now = opened(Some((1, 7)), b"x\ny\nz\nw\n");
        let r = Resume::decide(&saved(4, &then), &now);
        assert!(
            matches!(&r, Resume::Truncated(why) if why.contains("differ")),
            "{r:?}"
        );
    }

    #[test]
    fn another_inode_is_a_rotation_even_with_the_same_content() {
        let then = opened(Some((1, 7)), b"a\nb\nc\n");
        let now = opened(Some((1, 8)), b"a\nb\nc\n");
        assert_eq!(Resume::decide(&saved(4, &then), &now), Resume::Rotated);
        // Where the platform has no inodes, the content decides.
        let now = opened(None, b"a\nb\nc\n");
        assert!(matches!(
            Resume::decide(&saved(4, &then), &now),
            Resume::At { .. }
        ));
    }

    #[test]
    fn a_position_taken_before_the_file_was_opened_is_kept() {
        let s = SourcePosition {
            offset: 9,
            line: 0,
            identity: None,
        };
        let now = opened(Some((1, 1)), b"");
        assert_eq!(Resume::decide(&s, &now), Resume::At { offset: 9, line: 0 });
    }
}
