//! The Confluent wire format: `0x00`, a big-endian 4-byte schema ID, then the
//! Avro binary body. Every value on every flashsale topic is framed this way.

/// The first byte of every framed value.
pub const MAGIC: u8 = 0;
/// Magic byte plus schema ID.
pub const HEADER_LEN: usize = 5;

/// Why bytes are not a Confluent-framed value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer than five bytes: no room for the header.
    #[error("value is {0} bytes, shorter than the 5-byte Confluent header")]
    TooShort(usize),
    /// The first byte was not the magic byte.
    #[error("value starts with byte {0:#04x}, not the Confluent magic byte 0x00")]
    BadMagic(u8),
}

/// Frames an Avro body written with schema `schema_id`.
pub fn frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Splits a framed value into its schema ID and Avro body.
pub fn split(bytes: &[u8]) -> Result<(u32, &[u8]), WireError> {
    if bytes.len() < HEADER_LEN {
        return Err(WireError::TooShort(bytes.len()));
    }
    if bytes[0] != MAGIC {
        return Err(WireError::BadMagic(bytes[0]));
    }
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Ok((id, &bytes[HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves framing round-trips and malformed headers are told apart.
    #[test]
    fn frame_and_split() {
        let framed = frame(0x0102_0304, b"xyz");
        assert_eq!(framed, vec![0, 1, 2, 3, 4, b'x', b'y', b'z']);
        assert_eq!(split(&framed), Ok((0x0102_0304, &b"xyz"[..])));
        assert_eq!(split(b"\0\0"), Err(WireError::TooShort(2)));
        assert_eq!(split(b"\x01\0\0\0\x01"), Err(WireError::BadMagic(1)));
    }
}
