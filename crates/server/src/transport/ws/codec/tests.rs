use super::*;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A client frame: `first` byte (FIN, RSV, opcode), masked `payload`.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

const BINARY: u8 = 0x82;
const BINARY_FIRST: u8 = 0x02;
const CONTINUE_LAST: u8 = 0x80;
const CONTINUE: u8 = 0x00;

/// Decodes everything; message bytes and control events, or the error.
fn decode_all(
    input: &[u8],
    max: usize,
    out_size: usize,
) -> Result<(Vec<u8>, Vec<Decoded>), WsError> {
    let mut d = Decoder::new(max, input);
    let (mut data, mut events) = (Vec::new(), Vec::new());
    let mut out = vec![0u8; out_size];
    loop {
        match d.decode(&mut out)? {
            Decoded::Data(n) => data.extend_from_slice(&out[..n]),
            Decoded::More => return Ok((data, events)),
            other => events.push(other),
        }
    }
}

#[test]
fn messages_and_fragments_form_one_byte_stream_whatever_the_read_size() {
    let mut input = frame(BINARY, b"hello ");
    input.extend(frame(BINARY_FIRST, b"wor"));
    input.extend(frame(0x89, b"p1")); // a ping between fragments
    input.extend(frame(CONTINUE_LAST, b"ld"));
    input.extend(frame(BINARY, &[]));
    for out_size in [1, 3, 7, 4096] {
        let (data, events) = decode_all(&input, 1 << 20, out_size).unwrap();
        assert_eq!(data, b"hello world", "out buffer {out_size}");
        assert_eq!(events, vec![Decoded::Ping(Bytes::from_static(b"p1"))]);
    }
}

#[test]
fn bytes_arriving_one_at_a_time_decode_the_same() {
    let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let input = frame(BINARY, &payload);
    let mut d = Decoder::new(1 << 20, &[]);
    let mut got = Vec::new();
    let mut out = [0u8; 64];
    for b in &input {
        d.raw().extend_from_slice(&[*b]);
        while let Decoded::Data(n) = d.decode(&mut out).unwrap() {
            got.extend_from_slice(&out[..n]);
        }
    }
    assert_eq!(got, payload);
}

#[test]
fn a_half_read_frame_survives_a_hand_off() {
    let input = frame(BINARY, b"0123456789");
    let mut d = Decoder::new(1 << 20, &input[..9]);
    let mut out = [0u8; 64];
    let Decoded::Data(n) = d.decode(&mut out).unwrap() else {
        panic!("the first payload bytes are there")
    };
    let mut got = out[..n].to_vec();
    let mut d = Decoder::resume(1 << 20, d.suspend());
    d.raw().extend_from_slice(&input[9..]);
    let Decoded::Data(n) = d.decode(&mut out).unwrap() else {
        panic!("the rest")
    };
    got.extend_from_slice(&out[..n]);
    assert_eq!(got, b"0123456789", "the mask phase carried over");
}

#[test]
fn each_violation_gets_the_close_code_the_rfc_gives() {
    let unmasked = vec![BINARY, 1, b'x'];
    let cases: Vec<(Vec<u8>, WsError, u16)> = vec![
        (unmasked, WsError::Unmasked, 1002),
        (frame(0x81, b"text"), WsError::Text, 1003),
        (frame(0xc2, b"x"), WsError::ReservedBits, 1002),
        (frame(0x83, b"x"), WsError::ReservedOpcode, 1002),
        (frame(CONTINUE_LAST, b"x"), WsError::FragmentOrder, 1002),
        (
            [frame(BINARY_FIRST, b"a"), frame(BINARY, b"b")].concat(),
            WsError::FragmentOrder,
            1002,
        ),
        (frame(0x09, b"p"), WsError::BadControl, 1002),
        (frame(0x89, &[0u8; 126]), WsError::BadControl, 1002),
        (frame(0x88, &[3]), WsError::BadClose, 1002),
        (frame(0x88, &1005u16.to_be_bytes()), WsError::BadClose, 1002),
        (frame(BINARY, &[0u8; 101]), WsError::TooBig, 1009),
        (
            [
                frame(BINARY_FIRST, &[0u8; 60]),
                frame(CONTINUE_LAST, &[0u8; 60]),
            ]
            .concat(),
            WsError::TooBig,
            1009,
        ),
    ];
    for (input, error, code) in cases {
        let got = decode_all(&input, 100, 4096).map(|_| ());
        assert_eq!(got, Err(error), "{input:02x?}");
        assert_eq!(error.close_code().code(), code, "{error}");
    }
}

#[test]
fn a_declared_oversize_frame_is_refused_before_its_payload_arrives() {
    let mut header = vec![BINARY, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&MASK);
    assert_eq!(decode_all(&header, 1 << 20, 4096), Err(WsError::TooBig));
}

#[test]
fn a_message_in_too_many_fragments_is_refused() {
    let mut input = frame(BINARY_FIRST, b"");
    for _ in 0..MAX_FRAGMENTS {
        input.extend(frame(CONTINUE, b""));
    }
    assert_eq!(
        decode_all(&input, 1 << 20, 4096),
        Err(WsError::TooManyFragments)
    );
}

#[test]
fn close_frames_report_their_code() {
    let (_, events) = decode_all(&frame(0x88, &[0x03, 0xe8, b'o', b'k']), 100, 64).unwrap();
    assert_eq!(events, vec![Decoded::Close(Some(1000))]);
    let (_, events) = decode_all(&frame(0x88, b""), 100, 64).unwrap();
    assert_eq!(events, vec![Decoded::Close(None)]);
}

#[test]
fn server_headers_are_unmasked_and_sized_for_the_payload() {
    for (len, header_len) in [(0u64, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
        let mut out = BytesMut::new();
        put_header(&mut out, OpCode::Data(Data::Binary), len);
        assert_eq!(out.len(), header_len, "{len}");
        assert_eq!(out[0], 0x82);
        assert_eq!(out[1] & 0x80, 0, "server frames are not masked");
    }
    assert_eq!(&close_frame(CloseCode::TooBig)[..], &[0x88, 2, 0x03, 0xf1]);
}
