//! Both frame decoders on arbitrary bytes, fed in arbitrary pieces: no panic,
//! buffers bounded by the maximum, the same frames as when fed in one piece.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_net::frame::{Decoder, Framing};

fn decode(framing: Framing, max: usize, input: &[u8], cuts: &[u8]) -> (Vec<Vec<u8>>, bool) {
    let mut decoder = Decoder::new(framing, max);
    let mut frames = Vec::new();
    let mut rest = input;
    let mut cuts = cuts.iter().cycle();
    while !rest.is_empty() {
        let take = cuts
            .next()
            .map_or(rest.len(), |&c| 1 + usize::from(c) % rest.len());
        let mut piece = &rest[..take];
        rest = &rest[take..];
        loop {
            match decoder.decode(&mut piece) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= max);
                    frames.push(frame);
                }
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
            assert!(decoder.capacity() <= max);
        }
    }
    (frames, decoder.finish().is_err())
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let framing = if head & 1 == 0 {
        Framing::Lines
    } else {
        Framing::LengthPrefixed
    };
    let max = 1 + usize::from(head >> 1);
    let split = rest.len() / 2;
    let (cuts, input) = rest.split_at(split.min(8));
    let pieces = decode(framing, max, input, cuts);
    let whole = decode(framing, max, input, &[]);
    assert_eq!(pieces, whole);
});
