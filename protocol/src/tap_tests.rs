//! Unit tests of the control frames: every header field at its offset, every rejection.

use super::*;

fn data_header(len: u32) -> Header {
    Header {
        kind: Kind::Data,
        stream: Some(Stream::Stderr),
        flags: FLAG_CONTINUED,
        pid: 0x0102_0304,
        seq: 0xa0b0_c0d0,
        time_ns: 0x1122_3344_5566_7788,
        file_index: 0,
        payload_len: len,
    }
}

fn frame(h: &Header, payload: &[u8]) -> Vec<u8> {
    let mut v = h.encode().to_vec();
    v.extend_from_slice(payload);
    v
}

#[test]
fn header_fields_sit_at_their_offsets() {
    let mut h = data_header(5);
    h.kind = Kind::Data;
    h.stream = Some(Stream::File);
    h.file_index = 0xdead_beef;
    let b = h.encode();
    assert_eq!(&b[0..4], b"LTP1");
    assert_eq!(b[4], 2);
    assert_eq!(b[5], 3);
    assert_eq!(&b[6..8], &[1, 0]);
    assert_eq!(&b[8..12], &[4, 3, 2, 1]);
    assert_eq!(&b[12..16], &[0xd0, 0xc0, 0xb0, 0xa0]);
    assert_eq!(
        &b[16..24],
        &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]
    );
    assert_eq!(&b[24..28], &[0xef, 0xbe, 0xad, 0xde]);
    assert_eq!(&b[28..32], &[5, 0, 0, 0]);
}

#[test]
fn roundtrip_every_kind() {
    for (kind, stream) in [
        (Kind::Hello, None),
        (Kind::Data, Some(Stream::Stdout)),
        (Kind::Data, Some(Stream::Stderr)),
        (Kind::Data, Some(Stream::File)),
        (Kind::Loss, Some(Stream::Stdout)),
        (Kind::File, None),
    ] {
        let mut h = data_header(3);
        h.kind = kind;
        h.stream = stream;
        let bytes = frame(&h, b"abc");
        let f = decode_frame(&bytes).unwrap();
        assert_eq!(f.header, h);
        assert_eq!(f.payload, b"abc");
    }
}

#[test]
fn rejects_short_bad_magic_unknown_kind() {
    assert_eq!(decode_frame(&[0u8; 31]), Err(TapError::Short(31)));
    let mut b = frame(&data_header(0), b"");
    b[3] = b'2';
    assert_eq!(decode_frame(&b), Err(TapError::BadMagic(*b"LTP2")));
    let mut b = frame(&data_header(0), b"");
    b[4] = 9;
    assert_eq!(decode_frame(&b), Err(TapError::UnknownKind(9)));
    b[4] = 0;
    assert_eq!(decode_frame(&b), Err(TapError::UnknownKind(0)));
}

#[test]
fn rejects_stream_that_does_not_fit_the_kind() {
    let mut b = frame(&data_header(0), b"");
    b[5] = 0;
    assert!(matches!(
        decode_frame(&b),
        Err(TapError::BadStream {
            kind: Kind::Data,
            stream: 0
        })
    ));
    b[5] = 4;
    assert!(matches!(
        decode_frame(&b),
        Err(TapError::BadStream { stream: 4, .. })
    ));
    b[4] = Kind::Hello as u8;
    b[5] = 1;
    assert!(matches!(
        decode_frame(&b),
        Err(TapError::BadStream {
            kind: Kind::Hello,
            ..
        })
    ));
}

#[test]
fn rejects_length_mismatch_both_ways() {
    let b = frame(&data_header(4), b"abc");
    assert_eq!(
        decode_frame(&b),
        Err(TapError::LengthMismatch {
            declared: 4,
            actual: 3
        })
    );
    let b = frame(&data_header(2), b"abc");
    assert_eq!(
        decode_frame(&b),
        Err(TapError::LengthMismatch {
            declared: 2,
            actual: 3
        })
    );
    let b = frame(&data_header(u32::MAX), b"");
    assert!(matches!(
        decode_frame(&b),
        Err(TapError::LengthMismatch { .. })
    ));
}

#[test]
fn rejects_oversized_payloads() {
    let big = vec![b'x'; MAX_DATA_PAYLOAD + 1];
    let b = frame(&data_header(big.len() as u32), &big);
    assert!(matches!(
        decode_frame(&b),
        Err(TapError::TooLarge {
            kind: Kind::Data,
            ..
        })
    ));
    let ok = vec![b'x'; MAX_DATA_PAYLOAD];
    assert!(decode_frame(&frame(&data_header(ok.len() as u32), &ok)).is_ok());
    let mut h = data_header(0);
    h.kind = Kind::Loss;
    let ctl = vec![0u8; MAX_CONTROL_PAYLOAD + 1];
    h.payload_len = ctl.len() as u32;
    assert!(matches!(
        decode_frame(&frame(&h, &ctl)),
        Err(TapError::TooLarge {
            kind: Kind::Loss,
            ..
        })
    ));
}

fn sample_hello(buf: &mut [u8]) -> usize {
    let f = HelloFields {
        pid: 4242,
        ppid: 1,
        comm: b"nginx",
        exe: b"/usr/sbin/nginx",
        hostname: b"web-0",
        container_id: b"",
        version: b"0.1.0",
        ring: true,
    };
    let files: [&[u8]; 2] = [b"/var/log/nginx/access.log", b"/var/log/\xffodd/*.log"];
    let meta: [(&[u8], &[u8]); 1] = [(b"POD_NAME", b"web-0")];
    encode_hello(buf, &f, files.iter().copied(), meta.iter().copied()).unwrap()
}

#[test]
fn hello_roundtrip_with_non_utf8_path() {
    let mut buf = [0u8; 512];
    let n = sample_hello(&mut buf);
    let h = Hello::decode(&buf[..n]).unwrap();
    assert_eq!(h.pid, 4242);
    assert_eq!(h.ppid, 1);
    assert_eq!(h.comm, "nginx");
    assert_eq!(h.exe, "/usr/sbin/nginx");
    assert_eq!(h.hostname, "web-0");
    assert_eq!(h.container_id, "");
    assert_eq!(
        h.files,
        vec![
            "/var/log/nginx/access.log".to_string(),
            "/var/log/\u{fffd}odd/*.log".to_string()
        ]
    );
    assert_eq!(h.meta, vec![("POD_NAME".to_string(), "web-0".to_string())]);
    assert_eq!(h.version, "0.1.0");
    assert!(h.ring);
}

#[test]
fn hello_into_a_small_buffer_overflows_cleanly() {
    let mut small = [0u8; 40];
    let f = HelloFields {
        pid: 1,
        ppid: 0,
        comm: b"x",
        exe: b"/a/very/long/path/to/an/executable",
        hostname: b"h",
        container_id: b"",
        version: b"0",
        ring: false,
    };
    let none: [&[u8]; 0] = [];
    let no_meta: [(&[u8], &[u8]); 0] = [];
    assert_eq!(
        encode_hello(&mut small, &f, none, no_meta),
        Err(TapError::BufferTooSmall)
    );
}

#[test]
fn hello_requires_pid_and_ignores_unknown_keys() {
    let mut buf = [0u8; 64];
    let mut w = Writer::new(&mut buf);
    w.map(2).unwrap();
    w.str(b"future").unwrap();
    w.array(1).unwrap();
    w.nil().unwrap();
    w.str(b"comm").unwrap();
    w.str(b"py").unwrap();
    let n = w.len();
    assert_eq!(
        Hello::decode(&buf[..n]),
        Err(TapError::MissingKey {
            what: "HELLO",
            key: "pid"
        })
    );

    let mut w = Writer::new(&mut buf);
    w.map(2).unwrap();
    w.str(b"future").unwrap();
    w.array(1).unwrap();
    w.nil().unwrap();
    w.str(b"pid").unwrap();
    w.uint(7).unwrap();
    let n = w.len();
    assert_eq!(Hello::decode(&buf[..n]).unwrap().pid, 7);
}

#[test]
fn hello_rejects_wrong_types_and_ranges() {
    let mut buf = [0u8; 64];
    let mut w = Writer::new(&mut buf);
    w.map(1).unwrap();
    w.str(b"pid").unwrap();
    w.uint(u64::from(u32::MAX) + 1).unwrap();
    let n = w.len();
    assert!(matches!(
        Hello::decode(&buf[..n]),
        Err(TapError::OutOfRange { key: "pid", .. })
    ));

    let mut w = Writer::new(&mut buf);
    w.map(1).unwrap();
    w.str(b"ring").unwrap();
    w.str(b"yes").unwrap();
    let n = w.len();
    assert!(matches!(
        Hello::decode(&buf[..n]),
        Err(TapError::Payload { what: "HELLO", .. })
    ));
    assert!(matches!(
        Hello::decode(&[0x81]),
        Err(TapError::Payload { .. })
    ));
    assert!(matches!(
        Hello::decode(&[0xdf, 0xff, 0xff, 0xff, 0xff]),
        Err(TapError::Payload { .. })
    ));
}

#[test]
fn loss_and_file_roundtrip() {
    let mut buf = [0u8; 64];
    let n = encode_loss(&mut buf, 12, u64::MAX).unwrap();
    assert_eq!(
        Loss::decode(&buf[..n]).unwrap(),
        Loss {
            frames: 12,
            bytes: u64::MAX
        }
    );
    let n = encode_file(&mut buf, 3, b"/var/log/app.log").unwrap();
    assert_eq!(
        FileAnnounce::decode(&buf[..n]).unwrap(),
        FileAnnounce {
            index: 3,
            path: "/var/log/app.log".into()
        }
    );
    let n = encode_loss(&mut buf, 0, 0).unwrap();
    assert!(matches!(
        FileAnnounce::decode(&buf[..n]),
        Err(TapError::MissingKey { key: "index", .. })
    ));
}

#[test]
fn decoders_never_panic_on_arbitrary_bytes() {
    // Every prefix and a sweep of single-byte corruptions of valid payloads.
    let mut buf = [0u8; 512];
    let n = sample_hello(&mut buf);
    let good = buf[..n].to_vec();
    for cut in 0..good.len() {
        let _ = Hello::decode(&good[..cut]);
    }
    for i in 0..good.len() {
        for v in [0x00u8, 0x7f, 0xc1, 0xdd, 0xdf, 0xff] {
            let mut bad = good.clone();
            bad[i] = v;
            let _ = Hello::decode(&bad);
            let _ = Loss::decode(&bad);
            let _ = FileAnnounce::decode(&bad);
        }
    }
}
