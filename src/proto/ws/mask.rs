//! Client payload unmasking (RFC 6455 §5.3).
//!
//! Every client→server payload byte `i` is XORed with `key[i % 4]`. The fast
//! path widens the key to a `u64` and XORs eight bytes per step. It uses
//! `u64::from_ne_bytes`/`to_ne_bytes` on 8-byte chunks, which compile to
//! plain unaligned loads/stores, so it is correct for any buffer alignment
//! and needs no `unsafe`; the key pattern repeats every 4 bytes and every
//! chunk starts at a multiple of 8, so the widened key lines up for every
//! chunk and the remaining tail continues at phase 0.

/// XORs `buf` in place with the repeating 4-byte `key`, starting at key
/// phase 0. Masking is its own inverse.
pub(crate) fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_ne_bytes(word) ^ wide;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// The key to use for a slice that starts `offset` bytes into a masked
/// payload (used when a frame's payload is unmasked in several pieces).
pub(crate) fn key_at(key: [u8; 4], offset: usize) -> [u8; 4] {
    let mut k = key;
    k.rotate_left(offset & 3);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Obviously-correct byte-at-a-time reference.
    fn apply_mask_reference(buf: &mut [u8], key: [u8; 4]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }

    #[test]
    fn matches_reference_at_every_length_and_offset() {
        let key = [0x6d, 0xb6, 0xb2, 0x80];
        let data: Vec<u8> = (0u8..=255).cycle().take(100).collect();
        for offset in 0..8 {
            for len in 0..=70 {
                let mut fast = data.clone();
                let mut slow = data.clone();
                apply_mask(&mut fast[offset..offset + len], key);
                apply_mask_reference(&mut slow[offset..offset + len], key);
                assert_eq!(fast, slow, "offset {offset} len {len}");
            }
        }
    }

    #[test]
    fn is_an_involution() {
        let key = [1, 2, 3, 4];
        let orig: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut buf = orig.clone();
        apply_mask(&mut buf, key);
        assert_ne!(buf, orig);
        apply_mask(&mut buf, key);
        assert_eq!(buf, orig);
    }

    #[test]
    fn piecewise_with_rotated_key_equals_whole() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let data: Vec<u8> = (0..97u8).collect();
        let mut whole = data.clone();
        apply_mask_reference(&mut whole, key);
        for split in 0..data.len() {
            let mut parts = data.clone();
            let (a, b) = parts.split_at_mut(split);
            apply_mask(a, key_at(key, 0));
            apply_mask(b, key_at(key, split));
            assert_eq!(parts, whole, "split {split}");
        }
    }

    #[test]
    fn rfc_example() {
        // RFC 6455 §5.7: masked "Hello".
        let mut p = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut p, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(&p, b"Hello");
    }
}
