//! The on-disk format, written down once for the writer and the reader: file names,
//! the state file's header and records, and the manifest file. The format itself is
//! described on [`CheckpointStore`](super::CheckpointStore).

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Manifest, StageState, StoreError};

/// The magic bytes at offset 0 of every state file.
pub(super) const MAGIC: [u8; 8] = *b"WEIRCKPT";
/// The format version this build reads and writes (state file and manifest).
pub(super) const FORMAT_VERSION: u16 = 1;
/// The state file header: magic, version, two reserved zero bytes, checkpoint id.
pub(super) const HEADER_LEN: u64 = 20;
/// A record's header: payload length and CRC-32.
pub(super) const RECORD_HEADER_LEN: u64 = 8;
/// Manifests larger than this are refused unread (about 100 000 stages), and not
/// written. 1 MiB in unit tests, so that the test of the limit stays fast.
#[cfg(not(test))]
pub(super) const MAX_MANIFEST_BYTES: u64 = 16 << 20;
#[cfg(test)]
pub(super) const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// The file created and removed by `open` to prove the directory is writable.
pub(super) const PROBE_NAME: &str = "chk-probe.tmp";
/// The lock file: held exclusively by the open store.
pub(super) const LOCK_NAME: &str = "chk.lock";

/// `chk-{id:020}.state`.
pub(super) fn state_name(id: u64) -> String {
    format!("chk-{id:020}.state")
}

/// `chk-{id:020}.json`.
pub(super) fn manifest_name(id: u64) -> String {
    format!("chk-{id:020}.json")
}

/// `chk-{id:020}.json.tmp`: the manifest before it is renamed into place.
pub(super) fn manifest_tmp_name(id: u64) -> String {
    format!("chk-{id:020}.json.tmp")
}

/// A file of the store, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Name {
    /// `chk-{id}.state`.
    State(u64),
    /// `chk-{id}.json`.
    Manifest(u64),
    /// `chk-*.tmp`: a manifest not yet renamed, or the probe.
    Temp(Option<u64>),
}

/// Parses a file name the store writes; `None` for any other name (left alone).
pub(super) fn parse_name(name: &str) -> Option<Name> {
    let rest = name.strip_prefix("chk-")?;
    if let Some(stem) = rest.strip_suffix(".tmp") {
        return Some(Name::Temp(stem.strip_suffix(".json").and_then(parse_id)));
    }
    if let Some(id) = rest.strip_suffix(".state") {
        return parse_id(id).map(Name::State);
    }
    rest.strip_suffix(".json")
        .and_then(parse_id)
        .map(Name::Manifest)
}

fn parse_id(digits: &str) -> Option<u64> {
    if digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// The store's files in a directory.
#[derive(Debug, Default)]
pub(super) struct Listing {
    pub(super) manifests: BTreeSet<u64>,
    pub(super) states: BTreeSet<u64>,
    /// Temporary files, with the id they belong to if any.
    pub(super) temps: Vec<(PathBuf, Option<u64>)>,
}

impl Listing {
    /// Every checkpoint id that has a file.
    pub(super) fn ids(&self) -> BTreeSet<u64> {
        self.manifests.union(&self.states).copied().collect()
    }
}

/// Lists the store's files in `dir`.
pub(super) fn list_dir(dir: &Path) -> Result<Listing, StoreError> {
    let io = |source| StoreError::Io {
        path: dir.to_path_buf(),
        op: "list",
        source,
    };
    let mut listing = Listing::default();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let Some(name) = entry.file_name().to_str().and_then(parse_name) else {
            continue;
        };
        match name {
            Name::State(id) => {
                listing.states.insert(id);
            }
            Name::Manifest(id) => {
                listing.manifests.insert(id);
            }
            Name::Temp(id) => listing.temps.push((entry.path(), id)),
        }
    }
    Ok(listing)
}

/// The state file header of checkpoint `id`.
pub(super) fn header_bytes(id: u64) -> [u8; HEADER_LEN as usize] {
    let mut header = [0; HEADER_LEN as usize];
    header[..8].copy_from_slice(&MAGIC);
    header[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..].copy_from_slice(&id.to_le_bytes());
    header
}

/// Encodes `stage` as one record (length, CRC-32, payload) into `record`, returning
/// the payload's length and CRC-32.
///
/// Memory stays bounded by `limit`: past it the encoding is counted, not stored.
pub(super) fn encode_record(
    stage: &StageState,
    limit: usize,
    record: &mut Vec<u8>,
) -> Result<(u32, u32), StoreError> {
    record.clear();
    record.extend_from_slice(&[0; RECORD_HEADER_LEN as usize]);
    let mut sink = Capped {
        buf: record,
        room: limit,
        total: 0,
    };
    let encoded =
        bincode::serde::encode_into_std_write(stage, &mut sink, bincode::config::standard());
    let size = sink.total;
    let too_large = || StoreError::TooLarge {
        stage: stage.stage.clone(),
        size,
        limit,
    };
    if size > limit {
        return Err(too_large());
    }
    if let Err(e) = encoded {
        return Err(StoreError::Encode {
            stage: stage.stage.clone(),
            message: e.to_string(),
        });
    }
    let len = u32::try_from(size).map_err(|_| too_large())?;
    let crc = crc32fast::hash(&record[RECORD_HEADER_LEN as usize..]);
    record[..4].copy_from_slice(&len.to_le_bytes());
    record[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok((len, crc))
}

/// A writer that stores at most `room` bytes after what `buf` holds, and counts all.
struct Capped<'a> {
    buf: &'a mut Vec<u8>,
    room: usize,
    total: usize,
}

impl Write for Capped<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.total = self.total.saturating_add(data.len());
        if self.total <= self.room {
            self.buf.extend_from_slice(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The manifest file: the manifest and a checksum of its content.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    format: u16,
    manifest_crc32: u32,
    manifest: Manifest,
}

/// The CRC-32 of a manifest's content: of its compact JSON serialization.
fn manifest_crc(manifest: &Manifest) -> Result<u32, serde_json::Error> {
    Ok(crc32fast::hash(&serde_json::to_vec(manifest)?))
}

/// The bytes of the manifest file for `manifest`: pretty JSON and a newline.
pub(super) fn manifest_bytes(manifest: &Manifest) -> Result<Vec<u8>, serde_json::Error> {
    let file = ManifestFile {
        format: FORMAT_VERSION,
        manifest_crc32: manifest_crc(manifest)?,
        manifest: manifest.clone(),
    };
    let mut bytes = serde_json::to_vec_pretty(&file)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Parses a manifest file and checks its format and checksum; the reason otherwise.
pub(super) fn parse_manifest(bytes: &[u8]) -> Result<Manifest, String> {
    if bytes.is_empty() {
        return Err("the manifest is empty (torn write)".into());
    }
    let file: ManifestFile = serde_json::from_slice(bytes)
        .map_err(|e| format!("the manifest does not parse (torn or damaged): {e}"))?;
    if file.format != FORMAT_VERSION {
        return Err(format!(
            "manifest format {} is not supported (this build reads {FORMAT_VERSION})",
            file.format
        ));
    }
    let computed = manifest_crc(&file.manifest).map_err(|e| e.to_string())?;
    if computed != file.manifest_crc32 {
        return Err(format!(
            "manifest checksum mismatch: stored {:#010x}, computed {computed:#010x}",
            file.manifest_crc32
        ));
    }
    Ok(file.manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_others_are_ignored() {
        assert_eq!(state_name(7), "chk-00000000000000000007.state");
        assert_eq!(parse_name(&state_name(7)), Some(Name::State(7)));
        assert_eq!(
            parse_name(&manifest_name(u64::MAX)),
            Some(Name::Manifest(u64::MAX))
        );
        assert_eq!(parse_name(&manifest_tmp_name(3)), Some(Name::Temp(Some(3))));
        assert_eq!(parse_name(PROBE_NAME), Some(Name::Temp(None)));
        for other in [
            "chk-7.state",
            "chk-0000000000000000000x.json",
            "notes.json",
            LOCK_NAME,
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }

    #[test]
    fn header_is_magic_version_reserved_id() {
        let h = header_bytes(0x0102);
        assert_eq!(&h[..8], b"WEIRCKPT");
        assert_eq!(&h[8..12], &[1, 0, 0, 0]);
        assert_eq!(&h[12..], &0x0102_u64.to_le_bytes());
    }
}
