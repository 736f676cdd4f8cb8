//! Tests of the file DLQ: round trips, reopening, crashes at every byte, corruption of
//! every byte, hostile lengths, and arbitrary bytes.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use serde::{Deserialize, Serialize};

use super::frame::{HEADER_LEN, RECORD_HEADER_LEN};
use super::*;
use crate::dead_letter::{DeadLetter, DlqError, ReadError};
use crate::{ErrorClass, Failure};

const CLASSES: [ErrorClass; 5] = [
    ErrorClass::Panic,
    ErrorClass::Transient,
    ErrorClass::Permanent,
    ErrorClass::Timeout,
    ErrorClass::ResourceExhausted,
];

/// A deterministic letter: the class, message, attempts and time vary with `i`.
fn letter<T>(element: T, i: u64) -> DeadLetter<T> {
    let failure = Failure::error(CLASSES[i as usize % CLASSES.len()], format!("failure #{i}"));
    DeadLetter::new(
        element,
        format!("stage-{}", i % 4),
        "pipeline",
        &failure,
        (i % 7) as u32 + 1,
        i * 3,
    )
    .with_time(UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + i * 1_001))
}

fn text(i: u64) -> String {
    match i % 5 {
        0 => String::new(),
        1 => format!("element {i}"),
        2 => "ünïcødé ✓ ".repeat(i as usize % 9 + 1),
        3 => "x".repeat(300 + i as usize),
        _ => format!("{{\"id\":{i},\"ok\":false}}"),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: String,
    lines: Vec<(String, u32)>,
    discount: Option<f64>,
    tags: Vec<u8>,
}

fn order(i: u64) -> Order {
    Order {
        id: i,
        customer: format!("customer-{}", i % 13),
        lines: (0..i % 4)
            .map(|n| (format!("sku-{n}"), n as u32 * 2))
            .collect(),
        discount: i.is_multiple_of(2).then_some(i as f64 / 8.0),
        tags: (0..(i % 17) as u8).collect(),
    }
}

/// Fast options for loops: no fsync.
fn fast() -> FileDlqOptions {
    FileDlqOptions::new().sync(SyncPolicy::Never)
}

/// Writes `n` text letters; returns them and the record boundaries: the offsets
/// where each record starts, then the end of the file.
fn write_texts(path: &Path, n: u64) -> (Vec<DeadLetter<String>>, Vec<u64>) {
    let mut writer = fast().create(path).unwrap();
    let mut letters = Vec::new();
    let mut boundaries = Vec::new();
    for i in 0..n {
        let l = letter(text(i), i);
        boundaries.push(writer.append(&l).unwrap());
        letters.push(l);
    }
    boundaries.push(writer.end_offset());
    assert_eq!(writer.end_offset(), fs::metadata(path).unwrap().len());
    (letters, boundaries)
}

fn read_all<T: serde::de::DeserializeOwned>(path: &Path) -> ReadOutcome<T> {
    fast().open_reader(path).unwrap().read_all().unwrap()
}

#[test]
fn many_text_letters_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("texts.dlq");
    let (letters, boundaries) = write_texts(&path, 1_000);
    assert_eq!(boundaries[0], HEADER_LEN);

    let outcome = read_all::<String>(&path);
    assert_eq!(outcome.letters, letters);
    assert_eq!(outcome.tail, Tail::Clean);
    assert_eq!(outcome.valid_len, *boundaries.last().unwrap());

    // The iterator gives the same, then ends without an error.
    let mut reader = FileDlqReader::<String>::open(&path).unwrap();
    assert_eq!(reader.tail(), None);
    let read: Vec<_> = reader.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(read, letters);
    assert_eq!(reader.tail(), Some(&Tail::Clean));
    assert_eq!(reader.records_read(), 1_000);
    assert!(reader.next().is_none());
}

#[test]
fn struct_letters_round_trip_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.dlq");
    let mut writer = FileDlqWriter::create(&path).unwrap();
    let letters: Vec<_> = (0..200).map(|i| letter(order(i), i)).collect();
    for l in &letters {
        writer.append(l).unwrap();
    }
    drop(writer);

    assert_eq!(read_all::<Order>(&path).letters, letters);
    let elements = FileDlqReader::<Order>::open(&path)
        .unwrap()
        .elements()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(elements, (0..200).map(order).collect::<Vec<_>>());
}

#[test]
fn reopen_and_append_continues_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reopen.dlq");
    let (mut letters, boundaries) = write_texts(&path, 5);

    // `create` never overwrites.
    match FileDlqWriter::<String>::create(&path) {
        Err(DlqError::Io(e)) => assert_eq!(e.kind(), ErrorKind::AlreadyExists),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }

    let mut writer = FileDlqWriter::<String>::open_append(&path).unwrap();
    assert_eq!(writer.record_count(), 5);
    assert_eq!(writer.dropped_bytes(), 0);
    assert_eq!(writer.recovered_tail(), &Tail::Clean);
    assert_eq!(writer.end_offset(), *boundaries.last().unwrap());
    for i in 5..10 {
        let l = letter(text(i), i);
        writer.append(&l).unwrap();
        letters.push(l);
    }
    assert_eq!(writer.record_count(), 10);
    drop(writer);
    assert_eq!(read_all::<String>(&path).letters, letters);

    // `open_append` creates a missing file.
    let fresh = dir.path().join("fresh.dlq");
    let mut writer = FileDlqWriter::<String>::open_append(&fresh).unwrap();
    assert_eq!(
        (writer.record_count(), writer.end_offset()),
        (0, HEADER_LEN)
    );
    writer.append(&letter(text(1), 1)).unwrap();
    drop(writer);
    assert_eq!(read_all::<String>(&fresh).letters, [letter(text(1), 1)]);
}

#[test]
fn only_one_writer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.dlq");
    let first = FileDlqWriter::<String>::create(&path).unwrap();
    assert!(matches!(
        FileDlqWriter::<String>::open_append(&path),
        Err(DlqError::Locked)
    ));
    // Readers do not lock.
    assert_eq!(read_all::<String>(&path).tail, Tail::Clean);
    drop(first);
    FileDlqWriter::<String>::open_append(&path).unwrap();
}

/// The crash simulation: a writer killed after any number of bytes.
#[test]
fn a_file_cut_at_every_length_reads_every_complete_record() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original.dlq");
    let (letters, boundaries) = write_texts(&original, 12);
    let bytes = fs::read(&original).unwrap();
    let cut = dir.path().join("cut.dlq");

    for len in 0..=bytes.len() as u64 {
        fs::write(&cut, &bytes[..len as usize]).unwrap();
        let outcome = read_all::<String>(&cut);

        if len < HEADER_LEN {
            // A crash while the file was created.
            assert!(outcome.letters.is_empty());
            let expected = if len == 0 {
                Tail::Clean
            } else {
                Tail::Torn {
                    offset: 0,
                    bytes: len,
                }
            };
            assert_eq!(outcome.tail, expected);
            assert_eq!(outcome.valid_len, 0);
        } else {
            let complete = boundaries[1..].iter().filter(|&&end| end <= len).count();
            let valid_len = boundaries[complete];
            assert_eq!(outcome.letters, letters[..complete], "cut at {len}");
            assert_eq!(outcome.valid_len, valid_len);
            if boundaries.contains(&len) {
                assert_eq!(outcome.tail, Tail::Clean, "cut at boundary {len}");
            } else {
                assert_eq!(
                    outcome.tail,
                    Tail::Torn {
                        offset: valid_len,
                        bytes: len - valid_len
                    },
                    "cut at {len}"
                );
                // The iterator's last item says so too.
                let last = fast().open_reader::<String>(&cut).unwrap().last().unwrap();
                assert!(matches!(last, Err(ReadError::Torn { offset, .. }) if offset == valid_len));
            }
        }

        // Reopening for append cuts the torn part off and appends after the last
        // complete record.
        let mut writer = fast().open_append::<String>(&cut).unwrap();
        let kept = outcome.letters.len();
        assert_eq!(writer.record_count(), kept as u64);
        assert_eq!(writer.dropped_bytes(), len - outcome.valid_len);
        assert_eq!(writer.recovered_tail(), &outcome.tail);
        let extra = letter("after the crash".to_owned(), 99);
        writer.append(&extra).unwrap();
        drop(writer);
        let reread = read_all::<String>(&cut);
        assert_eq!(reread.tail, Tail::Clean, "cut at {len}");
        assert_eq!(reread.letters[..kept], letters[..kept]);
        assert_eq!(reread.letters[kept..], [extra]);
    }
}

/// Corruption anywhere in a record: it and everything after it are lost, nothing
/// before it is, and nothing damaged is returned.
#[test]
fn corrupting_any_byte_of_a_record_stops_reading_there() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original.dlq");
    let (letters, boundaries) = write_texts(&original, 8);
    let bytes = fs::read(&original).unwrap();
    let damaged = dir.path().join("damaged.dlq");

    for pos in HEADER_LEN..bytes.len() as u64 {
        let record = boundaries.iter().rposition(|&start| start <= pos).unwrap();
        let start = boundaries[record];
        let mut copy = bytes.clone();
        copy[pos as usize] ^= 0xFF;
        fs::write(&damaged, &copy).unwrap();

        let outcome = read_all::<String>(&damaged);
        // No resync: the records after the damaged one are not returned either.
        assert_eq!(outcome.letters, letters[..record], "byte {pos}");
        assert_eq!(outcome.tail.offset(), Some(start), "byte {pos}");
        let in_length_field = pos < start + 4;
        match &outcome.tail {
            Tail::Corrupt {
                reason: CorruptReason::Checksum { stored, computed },
                ..
            } => assert_ne!(stored, computed),
            // Only a damaged length can pass for something else: a record running past
            // the end of the file (torn), or a too-large or empty one.
            Tail::Torn { .. } | Tail::Corrupt { .. } => {
                assert!(in_length_field, "byte {pos}: {:?}", outcome.tail);
            }
            Tail::Clean => panic!("byte {pos}: corruption not detected"),
        }

        // Appending refuses to go on after a corrupt record, unless told to cut it.
        if let Tail::Corrupt { .. } = outcome.tail {
            match fast().open_append::<String>(&damaged) {
                Err(DlqError::Read(ReadError::Corrupt { offset, .. })) => assert_eq!(offset, start),
                other => panic!("byte {pos}: expected a corrupt-record error, got {other:?}"),
            }
            assert_eq!(
                fs::read(&damaged).unwrap(),
                copy,
                "the file is left as it was"
            );
            let writer = fast()
                .truncate_corrupt_tail(true)
                .open_append::<String>(&damaged)
                .unwrap();
            assert_eq!(writer.dropped_bytes(), bytes.len() as u64 - start);
            assert_eq!(writer.recovered_tail(), &outcome.tail);
        }
    }
}

#[test]
fn a_length_of_4_gib_is_rejected_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.dlq");
    let (letters, boundaries) = write_texts(&path, 2);
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    bytes.extend_from_slice(&0_u32.to_le_bytes());
    bytes.extend_from_slice(b"only a few bytes");
    fs::write(&path, &bytes).unwrap();

    let outcome = read_all::<String>(&path);
    assert_eq!(outcome.letters, letters);
    assert_eq!(
        outcome.tail,
        Tail::Corrupt {
            offset: boundaries[2],
            reason: CorruptReason::TooLarge {
                len: u32::MAX,
                max: FileDlqOptions::DEFAULT_MAX_RECORD_SIZE
            }
        }
    );

    // Even with no maximum, the buffer only grows with the bytes that are there.
    let outcome = fast()
        .max_record_size(u32::MAX)
        .open_reader::<String>(&path)
        .unwrap()
        .read_all()
        .unwrap();
    assert_eq!(outcome.letters, letters);
    assert_eq!(
        outcome.tail,
        Tail::Torn {
            offset: boundaries[2],
            bytes: 8 + 16
        }
    );
}

/// Writes one record with a correct checksum around an arbitrary payload.
fn write_raw_record(path: &Path, payload: &[u8]) {
    let mut bytes = super::frame::header_bytes().to_vec();
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    bytes.extend_from_slice(payload);
    fs::write(path, bytes).unwrap();
}

#[test]
fn lengths_inside_a_payload_are_bounded_by_the_decode_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crafted.dlq");

    // A string claiming 1 TiB: bincode must refuse before allocating it.
    let mut payload = vec![253];
    payload.extend_from_slice(&(1_u64 << 40).to_le_bytes());
    payload.extend_from_slice(b"abc");
    write_raw_record(&path, &payload);
    let outcome = read_all::<String>(&path);
    assert!(outcome.letters.is_empty());
    assert!(
        matches!(
            &outcome.tail,
            Tail::Corrupt {
                offset: 10,
                reason: CorruptReason::Decode { .. }
            }
        ),
        "{:?}",
        outcome.tail
    );

    // A sequence claiming 2^62 elements.
    let mut payload = vec![253];
    payload.extend_from_slice(&(1_u64 << 62).to_le_bytes());
    payload.extend_from_slice(&[1, 2, 3]);
    write_raw_record(&path, &payload);
    let outcome = read_all::<Vec<u64>>(&path);
    assert!(matches!(
        outcome.tail,
        Tail::Corrupt {
            reason: CorruptReason::Decode { .. },
            ..
        }
    ));

    // Zeros, as a file system may leave them after a crash.
    let mut bytes = super::frame::header_bytes().to_vec();
    bytes.extend_from_slice(&[0; 64]);
    fs::write(&path, bytes).unwrap();
    assert_eq!(
        read_all::<String>(&path).tail,
        Tail::Corrupt {
            offset: 10,
            reason: CorruptReason::Empty
        }
    );
}

#[test]
fn reading_with_the_wrong_element_type_is_reported_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("texts.dlq");
    let (_, boundaries) = write_texts(&path, 3);
    let outcome = read_all::<Order>(&path);
    assert!(outcome.letters.is_empty());
    assert!(matches!(outcome.tail, Tail::Corrupt { offset: 10, .. }));

    // The payload has no type tag: the first letter's element is "", whose encoding
    // (a zero length) happens to be a valid `u8`; the second one stops the reading.
    let outcome = read_all::<u8>(&path);
    assert_eq!(outcome.letters.len(), 1);
    assert_eq!(outcome.letters[0].element, 0);
    assert_eq!(outcome.tail.offset(), Some(boundaries[1]));
}

#[test]
fn headers_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.bin");
    fs::write(&path, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap();
    assert!(matches!(
        FileDlqReader::<String>::open(&path),
        Err(DlqError::BadHeader { found }) if found == b"\x89PNG\r\n\x1a\n\0\0"
    ));
    // The writer refuses too, and leaves the file alone.
    assert!(matches!(
        FileDlqWriter::<String>::open_append(&path),
        Err(DlqError::BadHeader { .. })
    ));
    assert_eq!(fs::read(&path).unwrap(), b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR");

    fs::write(&path, b"WEIRDLQ1\x09\x00").unwrap();
    assert!(matches!(
        FileDlqReader::<String>::open(&path),
        Err(DlqError::UnsupportedVersion {
            found: 9,
            supported: 1
        })
    ));
    assert!(matches!(
        FileDlqWriter::<String>::open_append(&path),
        Err(DlqError::UnsupportedVersion { .. })
    ));
}

#[test]
fn a_torn_header_is_rewritten_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("torn-header.dlq");
    fs::write(&path, b"WEIRD").unwrap();
    let mut reader = FileDlqReader::<String>::open(&path).unwrap();
    assert!(matches!(
        reader.next(),
        Some(Err(ReadError::Torn {
            offset: 0,
            bytes: 5
        }))
    ));
    assert!(reader.next().is_none());

    let mut writer = FileDlqWriter::<String>::open_append(&path).unwrap();
    assert_eq!(writer.dropped_bytes(), 5);
    assert_eq!(
        writer.recovered_tail(),
        &Tail::Torn {
            offset: 0,
            bytes: 5
        }
    );
    writer.append(&letter(text(1), 1)).unwrap();
    drop(writer);
    let outcome = read_all::<String>(&path);
    assert_eq!((outcome.letters.len(), outcome.tail), (1, Tail::Clean));
}

#[test]
fn a_letter_over_the_maximum_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.dlq");
    let mut writer = fast().max_record_size(100).create::<String>(&path).unwrap();
    let before = writer.end_offset();
    match writer.append(&letter("y".repeat(500), 1)) {
        Err(DlqError::RecordTooLarge { size, max: 100 }) => {
            assert!(size > 500, "size {size}");
            assert!(
                DlqError::RecordTooLarge { size, max: 100 }
                    .to_string()
                    .contains(&size.to_string())
            );
        }
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    assert_eq!(writer.end_offset(), before);
    assert_eq!(fs::metadata(&path).unwrap().len(), before);
    // The writer is still usable.
    writer.append(&letter("short".to_owned(), 2)).unwrap();
    drop(writer);
    assert_eq!(read_all::<String>(&path).letters.len(), 1);

    // A reader with a smaller maximum than the writer's sees a too-large record.
    let outcome = fast()
        .max_record_size(10)
        .open_reader::<String>(&path)
        .unwrap()
        .read_all()
        .unwrap();
    assert!(matches!(
        outcome.tail,
        Tail::Corrupt {
            reason: CorruptReason::TooLarge { max: 10, .. },
            ..
        }
    ));
}

#[test]
fn every_sync_policy_writes_readable_files() {
    let dir = tempfile::tempdir().unwrap();
    for (n, sync) in [
        SyncPolicy::Never,
        SyncPolicy::EveryRecord,
        SyncPolicy::EveryN(0),
        SyncPolicy::EveryN(3),
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.path().join(format!("sync-{n}.dlq"));
        let options = FileDlqOptions::new().sync(sync);
        let mut writer = options.create::<String>(&path).unwrap();
        assert_eq!(writer.options().sync_policy(), sync);
        for i in 0..7 {
            writer.append(&letter(text(i), i)).unwrap();
        }
        writer.flush().unwrap();
        drop(writer);
        assert_eq!(read_all::<String>(&path).letters.len(), 7, "{sync:?}");
    }
}

#[test]
fn handles_are_send_and_sync() {
    fn assert_send_sync<S: Send + Sync>() {}
    assert_send_sync::<FileDlqWriter<String>>();
    assert_send_sync::<FileDlqReader<String>>();
    assert_send_sync::<Elements<String>>();
    assert_send_sync::<DlqError>();
    assert_send_sync::<ReadError>();
}

fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        rng_seed: RngSeed::Fixed(0x5745_4952_444c_5131),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Reads `bytes` as a dead-letter file: must not panic or fail except with I/O errors;
/// the readable part never exceeds the file.
fn read_bytes<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> ReadOutcome<T> {
    fs::write(path, bytes).unwrap();
    let outcome = read_all::<T>(path);
    assert!(outcome.valid_len <= bytes.len() as u64);
    if outcome.tail.is_clean() {
        assert_eq!(outcome.valid_len, bytes.len() as u64);
    }
    outcome
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn arbitrary_bytes_after_a_header_never_panic(
        garbage in prop::collection::vec(any::<u8>(), 0..4096),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.dlq");
        let mut bytes = super::frame::header_bytes().to_vec();
        bytes.extend_from_slice(&garbage);
        read_bytes::<String>(&path, &bytes);
        read_bytes::<Order>(&path, &bytes);
        read_bytes::<Vec<u64>>(&path, &bytes);

        // And appending recovers from whatever it is, when allowed to cut.
        let mut writer = fast().truncate_corrupt_tail(true).open_append::<String>(&path).unwrap();
        let kept = writer.record_count() as usize;
        writer.append(&letter("recovered".to_owned(), 1)).unwrap();
        drop(writer);
        let outcome = read_all::<String>(&path);
        prop_assert_eq!(outcome.tail, Tail::Clean);
        prop_assert_eq!(outcome.letters.len(), kept + 1);
    }

    #[test]
    fn records_before_garbage_are_all_returned(
        n in 0_u64..20,
        garbage in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prefix.dlq");
        let (letters, _) = write_texts(&path, n);
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(&garbage);
        let outcome = read_bytes::<String>(&path, &bytes);
        prop_assert!(outcome.letters.len() >= letters.len());
        prop_assert_eq!(&outcome.letters[..letters.len()], &letters[..]);
    }

    #[test]
    fn random_damage_never_yields_a_damaged_letter(
        n in 1_u64..12,
        damage in prop::collection::vec((any::<prop::sample::Index>(), 1_u8..=255), 1..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("damaged.dlq");
        let (letters, _) = write_texts(&path, n);
        let original = fs::read(&path).unwrap();
        let mut bytes = original.clone();
        let body = bytes.len() - HEADER_LEN as usize;
        for (index, flip) in &damage {
            bytes[HEADER_LEN as usize + index.index(body)] ^= flip;
        }
        // Two flips of one byte may cancel out.
        prop_assume!(bytes != original);
        let outcome = read_bytes::<String>(&path, &bytes);
        // What is returned is a prefix of what was written, and ends before the
        // first damaged record.
        prop_assert!(outcome.letters.len() < letters.len());
        prop_assert_eq!(&outcome.letters[..], &letters[..outcome.letters.len()]);
    }
}

#[test]
fn record_framing_adds_eight_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("framing.dlq");
    let (_, boundaries) = write_texts(&path, 2);
    let bytes = fs::read(&path).unwrap();
    assert_eq!(&bytes[..10], b"WEIRDLQ1\x01\x00");
    let len = u32::from_le_bytes(bytes[10..14].try_into().unwrap()) as u64;
    let crc = u32::from_le_bytes(bytes[14..18].try_into().unwrap());
    assert_eq!(boundaries[1], HEADER_LEN + RECORD_HEADER_LEN + len);
    assert_eq!(crc, crc32fast::hash(&bytes[18..boundaries[1] as usize]));
}

/// A writer cut back to each end offset it had: the records before it stay, the
/// count follows, appending goes on after it; an offset inside a record or past
/// the end is refused and the writer goes on where it was.
#[test]
fn truncate_to_an_earlier_end_offset_drops_the_records_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.dlq");
    let mut writer = FileDlqWriter::create(&path).unwrap();
    let mut ends = vec![writer.end_offset()];
    for i in 0..6 {
        writer.append(&letter(text(i), i)).unwrap();
        ends.push(writer.end_offset());
    }
    drop(writer);
    for (kept, &end) in ends.iter().enumerate() {
        let copy = dir.path().join(format!("cut-{kept}.dlq"));
        fs::copy(&path, &copy).unwrap();
        let mut writer = FileDlqWriter::<String>::open_append(&copy).unwrap();
        writer.truncate_to(end).unwrap();
        assert_eq!(writer.record_count(), kept as u64);
        assert_eq!(writer.end_offset(), end);
        writer.append(&letter(text(99), 99)).unwrap();
        drop(writer);
        let outcome = FileDlqReader::<String>::open(&copy)
            .unwrap()
            .read_all()
            .unwrap();
        let mut expected: Vec<String> = (0..kept as u64).map(text).collect();
        expected.push(text(99));
        let got: Vec<String> = outcome.letters.into_iter().map(|l| l.element).collect();
        assert_eq!(got, expected, "kept {kept}");
        assert_eq!(outcome.tail, Tail::Clean);
    }

    let mut writer = FileDlqWriter::<String>::open_append(&path).unwrap();
    let end = writer.end_offset();
    for bad in [ends[2] + 1, end + 1, 0] {
        match writer.truncate_to(bad) {
            Err(DlqError::Io(e)) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}: {e}"),
            other => panic!("{bad}: expected InvalidInput, got {other:?}"),
        }
        assert_eq!(writer.end_offset(), end);
    }
    // Refused cuts leave the writer appending at its end.
    writer.append(&letter(text(7), 7)).unwrap();
    drop(writer);
    let outcome = FileDlqReader::<String>::open(&path)
        .unwrap()
        .read_all()
        .unwrap();
    assert_eq!(outcome.letters.len(), 7);
    assert_eq!(outcome.tail, Tail::Clean);
}

/// A position taken while writing, and again after reopening: the same. Cut back
/// to it, the file holds the records before it; a file that is shorter, or holds
/// other records before it (replaced, rotated), is refused naming the file, and
/// left as it is.
#[test]
fn cut_back_to_a_position_checks_that_the_file_is_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.dlq");
    let mut writer = fast().create::<String>(&path).unwrap();
    let empty = writer.position();
    assert_eq!(
        (empty.end, empty.records, empty.last_crc),
        (HEADER_LEN, 0, None)
    );
    for i in 0..3 {
        writer.append(&letter(text(i), i)).unwrap();
    }
    let at3 = writer.position();
    for i in 3..5 {
        writer.append(&letter(text(i), i)).unwrap();
    }
    let at5 = writer.position();
    drop(writer);
    let mut writer = fast().open_append::<String>(&path).unwrap();
    assert_eq!(
        writer.position(),
        at5,
        "a reopened writer finds the same position"
    );
    writer.cut_back(&at5).unwrap();
    writer.cut_back(&at3).unwrap();
    assert_eq!(writer.position(), at3);
    let got: Vec<String> = read_all::<String>(&path)
        .letters
        .into_iter()
        .map(|l| l.element)
        .collect();
    assert_eq!(got, (0..3).map(text).collect::<Vec<_>>());

    // Shorter than the position: refused, nothing changes.
    let err = writer.cut_back(&at5).unwrap_err();
    assert!(
        matches!(&err, DlqError::Mismatch { path: p, reason } if *p == path && reason.contains("truncated")),
        "{err}"
    );
    assert_eq!(writer.position(), at3);
    drop(writer);

    // Another file with as many bytes of records: other records, refused.
    let other = dir.path().join("other.dlq");
    let mut writer = fast().create::<String>(&other).unwrap();
    for i in 10..13 {
        writer.append(&letter(text(i), i)).unwrap();
    }
    while writer.end_offset() < at3.end {
        writer.append(&letter(String::new(), 0)).unwrap();
    }
    let before = writer.position();
    let err = writer.cut_back(&at3).unwrap_err();
    assert!(matches!(err, DlqError::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains("other.dlq"), "{err}");
    assert_eq!(writer.position(), before);
    // Back to no record at all is always a position of the file.
    writer.cut_back(&empty).unwrap();
    assert_eq!(writer.record_count(), 0);
}
