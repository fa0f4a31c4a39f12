//! Bounded gunzip for CompressedPackedForward bodies.
//!
//! Fluentd appends one gzip member per buffered write, so a body is often several concatenated
//! members: [`MultiGzDecoder`] reads them all (a plain `GzDecoder` would silently stop after the
//! first and lose events). The output is read through `take(max + 1)`, so a gzip bomb costs at
//! most the cap in memory and is reported as [`DecodeError::DecompressedTooLarge`].

use std::io::Read;

use flate2::read::MultiGzDecoder;

use super::error::DecodeError;

/// Decompresses every gzip member of `data`, refusing output larger than `max` bytes.
pub(crate) fn gunzip(data: &[u8], max: usize) -> Result<Vec<u8>, DecodeError> {
    // Start from a typical log compression ratio, not from anything the peer declares.
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(max).min(1 << 20));
    let limit = (max as u64).saturating_add(1);
    MultiGzDecoder::new(data)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(DecodeError::Gzip)?;
    if out.len() > max {
        return Err(DecodeError::DecompressedTooLarge { max });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).expect("write to Vec");
        e.finish().expect("finish to Vec")
    }

    #[test]
    fn concatenated_members_all_decode() {
        let mut body = gz(b"first ");
        body.extend(gz(b"second "));
        body.extend(gz(b"third"));
        assert_eq!(
            gunzip(&body, 100).expect("valid gzip"),
            b"first second third"
        );
    }

    #[test]
    fn bomb_is_capped() {
        let body = gz(&vec![0u8; 10 << 20]);
        assert!(body.len() < 64 << 10);
        assert!(
            matches!(gunzip(&body, 1 << 20), Err(DecodeError::DecompressedTooLarge { max }) if max == 1 << 20)
        );
        assert_eq!(gunzip(&body, 10 << 20).expect("fits").len(), 10 << 20);
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let mut body = gz(b"hello");
        let n = body.len();
        body[n / 2] ^= 0xff;
        assert!(gunzip(&body, 100).is_err());
        assert!(matches!(
            gunzip(b"not gzip at all", 100),
            Err(DecodeError::Gzip(_))
        ));
    }
}
