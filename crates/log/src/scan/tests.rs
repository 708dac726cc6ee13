//! The scanner against segment images built in memory: every kind of
//! damage, and the same answers whatever the chunk size.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::format::{encode, encode_marker, SEGMENT_HEADER_LEN};
use crate::record::MessageRecord;
use surepush_proto::{DeviceId, Qos, Seq, UserId};

fn message(seq: u64, payload: Vec<u8>) -> Record {
    Record::Message(MessageRecord {
        inbox: UserId(7),
        seq: Seq(seq),
        from: UserId(1),
        from_device: DeviceId(1),
        to: UserId(7),
        client_msg_id: seq,
        qos: Qos::AtLeastOnce,
        ts_ms: 1_000 + seq,
        attrs: Bytes::new(),
        payload: Bytes::from(payload),
    })
}

/// A segment image: header space, `n` messages and a marker after each
/// third, zeros up to `size`. Returns it with the record start offsets.
fn image(n: u64, size: usize) -> (Vec<u8>, Vec<u64>) {
    let mut out = BytesMut::from(&vec![0u8; SEGMENT_HEADER_LEN as usize][..]);
    let mut starts = Vec::new();
    for s in 1..=n {
        starts.push(out.len() as u64);
        encode(&message(s, vec![s as u8; 40 + s as usize]), &mut out);
        if s % 3 == 0 {
            starts.push(out.len() as u64);
            encode_marker(out.len() as u64, &mut out);
        }
    }
    let mut bytes = out.to_vec();
    bytes.resize(size, 0);
    (bytes, starts)
}

/// Everything the scanner finds in `bytes`, fed `chunk` bytes at a time.
fn scan_all(bytes: &[u8], chunk: usize) -> Vec<Found> {
    let mut scanner = Scanner::new(SEGMENT_HEADER_LEN, bytes.len() as u64);
    let mut out = Vec::new();
    loop {
        match scanner.step() {
            Step::Found(f) => out.push(f),
            Step::NeedMore => {
                let at = scanner.wants() as usize;
                let end = (at + chunk).min(bytes.len());
                scanner.feed(Bytes::copy_from_slice(&bytes[at..end]));
            }
            Step::Done => return out,
        }
    }
}

/// What was found, in a comparable shape: (kind, at, detail).
fn shape(found: &[Found]) -> Vec<(&'static str, u64, u64)> {
    found
        .iter()
        .map(|f| match f {
            Found::Record { at, len, .. } => ("record", *at, *len as u64),
            Found::Internal { at, len, .. } => ("internal", *at, *len as u64),
            Found::Damage { at, resume, .. } => ("damage", *at, *resume),
            Found::End { at } => ("end", *at, 0),
        })
        .collect()
}

fn check_every_chunk_size(bytes: &[u8]) -> Vec<(&'static str, u64, u64)> {
    let whole = shape(&scan_all(bytes, bytes.len()));
    for chunk in [1, 7, 64, 4096] {
        assert_eq!(shape(&scan_all(bytes, chunk)), whole, "chunk {chunk}");
    }
    whole
}

#[test]
fn a_clean_segment_is_its_records_then_the_end() {
    let (bytes, starts) = image(9, 16 << 10);
    let found = check_every_chunk_size(&bytes);
    assert_eq!(found.len(), starts.len() + 1);
    assert_eq!(found.iter().filter(|f| f.0 == "record").count(), 9);
    assert_eq!(found.iter().filter(|f| f.0 == "internal").count(), 3);
    let end = found.last().unwrap();
    assert_eq!(end.0, "end");
    assert_eq!(end.1, found[found.len() - 2].1 + found[found.len() - 2].2);
}

#[test]
fn a_flipped_body_byte_is_exactly_one_damaged_record_and_the_rest_is_found() {
    let (mut bytes, starts) = image(9, 16 << 10);
    bytes[starts[4] as usize + 30] ^= 0x40; // inside the fourth message's body
    let found = check_every_chunk_size(&bytes);
    let damage: Vec<_> = found.iter().filter(|f| f.0 == "damage").collect();
    assert_eq!(damage, vec![&("damage", starts[4], starts[5])]);
    assert_eq!(found.iter().filter(|f| f.0 == "record").count(), 8);
    assert_eq!(found.last().unwrap().0, "end");
}

#[test]
fn a_flipped_length_is_resynced_byte_by_byte() {
    let (mut bytes, starts) = image(9, 16 << 10);
    bytes[starts[2] as usize + 1] ^= 0x01; // the length's second byte
    let found = check_every_chunk_size(&bytes);
    let damage: Vec<_> = found.iter().filter(|f| f.0 == "damage").collect();
    assert_eq!(damage, vec![&("damage", starts[2], starts[3])]);
    assert_eq!(found.iter().filter(|f| f.0 == "record").count(), 8);
}

#[test]
fn zeros_under_later_records_are_damage_not_the_end() {
    let (mut bytes, starts) = image(12, 16 << 10);
    let (from, to) = (starts[3] as usize, starts[7] as usize);
    bytes[from..to].fill(0);
    let found = check_every_chunk_size(&bytes);
    let damage: Vec<_> = found.iter().filter(|f| f.0 == "damage").collect();
    assert_eq!(damage, vec![&("damage", starts[3], starts[7])]);
    let Found::Damage { why, .. } = scan_all(&bytes, 100)
        .into_iter()
        .find(|f| matches!(f, Found::Damage { .. }))
        .unwrap()
    else {
        unreachable!()
    };
    assert_eq!(why, ZEROS_BEFORE_RECORDS);
    assert_eq!(found.last().unwrap().0, "end");
}

#[test]
fn garbage_after_the_last_record_is_damage_to_the_end_of_the_file() {
    let (mut bytes, starts) = image(3, 16 << 10);
    let end = *starts.last().unwrap() as usize + format::MARKER_LEN;
    bytes[end + 100..end + 140].fill(0xA7);
    let found = check_every_chunk_size(&bytes);
    assert_eq!(
        found.last().unwrap(),
        &("damage", end as u64, bytes.len() as u64)
    );
}

#[test]
fn a_torn_last_record_is_damage_to_the_end_and_zeros_alone_are_the_end() {
    let (bytes, starts) = image(6, 16 << 10);
    let mut torn = bytes.clone();
    let last = *starts.last().unwrap() as usize;
    torn[last - 20..].fill(0); // the end of the record before the last marker
    let found = check_every_chunk_size(&torn);
    // Its own length still frames it: exactly that record, then the end.
    let start_of_torn = starts[starts.len() - 2];
    assert_eq!(
        found[found.len() - 2..],
        [
            ("damage", start_of_torn, last as u64),
            ("end", last as u64, 0)
        ]
    );
    let none = vec![0u8; 8192];
    assert_eq!(check_every_chunk_size(&none), vec![("end", 4096, 0)]);
}

/// A record framed inside a payload is not taken for a real one when only
/// the body around it is damaged: the damaged record's own length is
/// trusted first.
#[test]
fn a_record_inside_a_payload_is_not_resynced_to() {
    let mut inner = BytesMut::new();
    encode(&message(99, vec![1; 10]), &mut inner);
    let mut payload = vec![0x55u8; 8];
    payload.extend_from_slice(&inner);
    payload.extend_from_slice(&[0x55; 8]);
    let mut out = BytesMut::from(&vec![0u8; SEGMENT_HEADER_LEN as usize][..]);
    encode(&message(1, payload), &mut out);
    let second = out.len() as u64;
    encode(&message(2, vec![2; 10]), &mut out);
    let mut bytes = out.to_vec();
    bytes.resize(16 << 10, 0);
    bytes[SEGMENT_HEADER_LEN as usize + 40] ^= 0x01; // the first message's body
    let found = check_every_chunk_size(&bytes);
    assert_eq!(found[0], ("damage", SEGMENT_HEADER_LEN, second));
    assert_eq!(
        found[1],
        ("record", second, bytes_len_of(&message(2, vec![2; 10])))
    );
}

fn bytes_len_of(r: &Record) -> u64 {
    format::encoded_len(r) as u64
}

#[test]
fn a_lenient_reading_names_the_lost_message() {
    let mut out = BytesMut::new();
    encode(&message(5, vec![9; 30]), &mut out);
    encode(
        &Record::Cursor {
            user: UserId(7),
            device: DeviceId(2),
            seq: Seq(4),
        },
        &mut out,
    );
    let mut bytes = out.to_vec();
    bytes[45] ^= 0xFF; // its `to` field: not the inbox, seq or sender
    let guesses = guess_records(&bytes, 1000);
    assert_eq!(
        guesses,
        vec![
            Guess::Message {
                lsn: 1000,
                inbox: 7,
                seq: 5,
                from: 1,
                payload_len: 30
            },
            Guess::Cursor {
                lsn: 1000 + format::encoded_len(&message(5, vec![9; 30])) as u64,
                user: 7,
                device: 2,
                seq: 4
            }
        ]
    );
    assert_eq!(
        guess_records(&[0xFF; 6], 8),
        vec![Guess::Unreadable { lsn: 8, len: 6 }]
    );
}

/// Scans `bytes` with `scan_file`, the file system reporting the given
/// stretches as data (everything else a hole); returns what was found and
/// how many bytes were read.
fn scan_with_holes(bytes: &[u8], data: &[(u64, u64)]) -> (Vec<(&'static str, u64, u64)>, usize) {
    let read_bytes = std::cell::Cell::new(0usize);
    let read = |pos: u64, len: usize| {
        let end = (pos as usize + len).min(bytes.len());
        read_bytes.set(read_bytes.get() + (end - pos as usize));
        std::future::ready(Ok::<_, std::io::Error>(Bytes::copy_from_slice(
            &bytes[pos as usize..end],
        )))
    };
    let next_data = |pos: u64| {
        Ok(data
            .iter()
            .find(|(_, end)| *end > pos)
            .map(|(start, _)| pos.max(*start)))
    };
    let mut found = Vec::new();
    futures_lite::future::block_on(scan_file(
        SEGMENT_HEADER_LEN,
        bytes.len() as u64,
        Reads { read, next_data },
        |f| {
            found.push(f);
            Ok(true)
        },
    ))
    .unwrap();
    (shape(&found), read_bytes.get())
}

/// The preallocated rest of a segment is skipped, not read, and what is
/// found is what reading every byte finds; data after a hole is found too.
#[test]
fn zeros_the_file_system_does_not_hold_are_skipped_not_read() {
    let size = 64 << 20;
    let (bytes, starts) = image(9, size);
    let data_end = (*starts.last().unwrap() as usize + 4096) / 4096 * 4096;
    let (found, read) = scan_with_holes(&bytes, &[(0, data_end as u64)]);
    assert_eq!(found, shape(&scan_all(&bytes, bytes.len())));
    assert!(read <= SCAN_CHUNK, "read {read} bytes of {size}");
    // A block of records far after a hole: damage, found.
    let mut later = bytes.clone();
    let far = 40 << 20;
    later[far..far + 200].copy_from_slice(&bytes[starts[0] as usize..starts[0] as usize + 200]);
    let (found, read) = scan_with_holes(
        &later,
        &[(0, data_end as u64), (far as u64, far as u64 + 4096)],
    );
    assert_eq!(found, shape(&scan_all(&later, later.len())));
    assert!(
        found.iter().any(|f| f.0 == "damage" && f.2 == far as u64),
        "{found:?}"
    );
    assert!(read <= 3 * SCAN_CHUNK, "read {read} bytes of {size}");
}
