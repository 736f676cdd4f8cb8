//! Reading a checkpoint back and verifying every byte of it against its manifest.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use super::format::{self, HEADER_LEN, MAGIC, MAX_MANIFEST_BYTES, RECORD_HEADER_LEN};
use super::{CheckpointData, Manifest, Skipped, StageState, StoreError};
use crate::checkpoint;

/// Why a checkpoint could not be read.
#[derive(Debug)]
pub(super) enum Failure {
    /// The checkpoint is torn or corrupt: skip it.
    Skip(Skipped),
    /// The disk failed (not a missing file): the caller cannot decide between
    /// checkpoints, so it reports the error.
    Io(StoreError),
}

fn skip(file: &Path, reason: impl Into<String>) -> Failure {
    Failure::Skip(Skipped {
        file: file.to_path_buf(),
        reason: reason.into(),
    })
}

/// A read error: a missing or shrinking file is a skip, anything else an error.
fn read_error(file: &Path, op: &'static str, e: io::Error) -> Failure {
    match e.kind() {
        io::ErrorKind::NotFound => skip(file, "the file is missing"),
        io::ErrorKind::UnexpectedEof => skip(file, "the file ends early (truncated)"),
        _ => Failure::Io(StoreError::Io {
            path: file.to_path_buf(),
            op,
            source: e,
        }),
    }
}

/// Reads and verifies checkpoint `id`: its manifest, then every record of its state
/// file.
pub(super) fn read_checkpoint(
    dir: &Path,
    id: u64,
    limit: usize,
) -> Result<(Manifest, CheckpointData), Failure> {
    let manifest = read_manifest(dir, id, limit)?;
    let path = dir.join(&manifest.state_file);
    let file = File::open(&path).map_err(|e| read_error(&path, "open", e))?;
    let actual = file
        .metadata()
        .map_err(|e| read_error(&path, "read", e))?
        .len();
    if actual != manifest.state_bytes {
        return Err(skip(
            &path,
            format!(
                "the state file is {actual} bytes, its manifest says {} (truncated or extended)",
                manifest.state_bytes
            ),
        ));
    }
    let mut input = BufReader::new(file);
    let mut header = [0; HEADER_LEN as usize];
    input
        .read_exact(&mut header)
        .map_err(|e| read_error(&path, "read", e))?;
    check_header(&header, id).map_err(|reason| skip(&path, reason))?;

    let mut stages = Vec::with_capacity(manifest.stages.len());
    for entry in &manifest.stages {
        let at = |what: String| {
            format!(
                "{what} (record of stage {:?} at offset {})",
                entry.stage, entry.offset
            )
        };
        let mut head = [0; RECORD_HEADER_LEN as usize];
        input
            .read_exact(&mut head)
            .map_err(|e| read_error(&path, "read", e))?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let stored = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if u64::from(len) != entry.len || stored != entry.crc32 {
            return Err(skip(
                &path,
                at(format!(
                    "the record header says {len} bytes with CRC-32 {stored:#010x}, the manifest {} bytes with {:#010x}",
                    entry.len, entry.crc32
                )),
            ));
        }
        // `len` is at most the limit and the file is as long as the manifest says:
        // this allocates no more than bytes that are there.
        let mut payload = Vec::with_capacity(len as usize);
        (&mut input)
            .take(u64::from(len))
            .read_to_end(&mut payload)
            .map_err(|e| read_error(&path, "read", e))?;
        if payload.len() != len as usize {
            return Err(skip(
                &path,
                at("the file ends inside the record (truncated)".into()),
            ));
        }
        let computed = crc32fast::hash(&payload);
        if computed != stored {
            return Err(skip(
                &path,
                at(format!(
                    "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
                )),
            ));
        }
        let state: StageState = checkpoint::decode(&payload, limit)
            .map_err(|e| skip(&path, at(format!("the record does not decode: {e}"))))?;
        if state.stage != entry.stage
            || state.kind != entry.kind
            || state.snapshot.version != entry.version
            || state.snapshot.parts.len() != entry.parts
        {
            return Err(skip(
                &path,
                at(format!(
                    "the record holds stage {:?} ({}, version {}, {} parts), the manifest says {:?} ({}, version {}, {} parts)",
                    state.stage,
                    state.kind,
                    state.snapshot.version,
                    state.snapshot.parts.len(),
                    entry.stage,
                    entry.kind,
                    entry.version,
                    entry.parts
                )),
            ));
        }
        stages.push(state);
    }
    let data = CheckpointData {
        id,
        pipeline: manifest.pipeline.clone(),
        created_unix_ms: manifest.created_unix_ms,
        stages,
    };
    Ok((manifest, data))
}

/// Reads checkpoint `id`'s manifest and checks it against itself: checksum, name,
/// record offsets and lengths (each within `limit`), total length.
pub(super) fn read_manifest(dir: &Path, id: u64, limit: usize) -> Result<Manifest, Failure> {
    let path = dir.join(format::manifest_name(id));
    let file = File::open(&path).map_err(|e| read_error(&path, "open", e))?;
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| read_error(&path, "read", e))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(skip(
            &path,
            format!("the manifest is larger than {MAX_MANIFEST_BYTES} bytes"),
        ));
    }
    let manifest = format::parse_manifest(&bytes).map_err(|reason| skip(&path, reason))?;
    check_manifest(&manifest, id, limit).map_err(|reason| skip(&path, reason))?;
    Ok(manifest)
}

fn check_manifest(manifest: &Manifest, id: u64, limit: usize) -> Result<(), String> {
    if manifest.id != id {
        return Err(format!(
            "the manifest is for checkpoint {}, its file name says {id}",
            manifest.id
        ));
    }
    let expected = format::state_name(id);
    if manifest.state_file != expected {
        return Err(format!(
            "the manifest names state file {:?}, expected {expected:?}",
            manifest.state_file
        ));
    }
    let mut offset = HEADER_LEN;
    for entry in &manifest.stages {
        if entry.offset != offset {
            return Err(format!(
                "the record of stage {:?} is at offset {}, expected {offset}",
                entry.stage, entry.offset
            ));
        }
        if entry.len > limit as u64 {
            return Err(format!(
                "the record of stage {:?} claims {} bytes, over the limit of {limit} bytes",
                entry.stage, entry.len
            ));
        }
        offset = offset
            .checked_add(RECORD_HEADER_LEN + entry.len)
            .ok_or_else(|| "the records' lengths overflow".to_string())?;
    }
    if manifest.state_bytes != offset {
        return Err(format!(
            "the manifest says the state file is {} bytes, its records end at {offset}",
            manifest.state_bytes
        ));
    }
    Ok(())
}

fn check_header(header: &[u8; HEADER_LEN as usize], id: u64) -> Result<(), String> {
    if header[..8] != MAGIC {
        return Err(format!(
            "not a weir state file (magic {:02x?})",
            &header[..8]
        ));
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    if version != format::FORMAT_VERSION {
        return Err(format!(
            "state file format {version} is not supported (this build reads {})",
            format::FORMAT_VERSION
        ));
    }
    if header[10..12] != [0, 0] {
        return Err("the state file header is damaged (reserved bytes are not zero)".into());
    }
    let found = u64::from_le_bytes(header[12..].try_into().unwrap_or([0; 8]));
    if found != id {
        return Err(format!(
            "the state file header is for checkpoint {found}, not {id}"
        ));
    }
    Ok(())
}

/// Whether checkpoint `id` looks complete without reading its state: its manifest
/// verifies and its state file has the length the manifest says. Used to decide what
/// to prune, after every write, where reading all state back would cost too much.
pub(super) fn looks_complete(dir: &Path, id: u64, limit: usize) -> bool {
    let Ok(manifest) = read_manifest(dir, id, limit) else {
        return false;
    };
    std::fs::metadata(dir.join(&manifest.state_file)).is_ok_and(|m| m.len() == manifest.state_bytes)
}
