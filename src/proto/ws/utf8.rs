//! Incremental UTF-8 validation for text messages that arrive in pieces.
//!
//! A text message may be split across fragments (and this decoder also
//! validates a frame's payload as it trickles in), and a split can fall in
//! the middle of a code point. [`Utf8Validator`] remembers at most three
//! bytes of an incomplete trailing code point between calls, so it needs no
//! heap and only four bytes of state. Invalid input is reported as soon as
//! the offending byte is seen, which lets the server fail a connection
//! before the rest of a bad message arrives.
//!
//! The common case — a whole valid chunk with nothing carried over — costs
//! one call to `simdutf8::basic`; the slower `compat` API, which reports
//! where validation stopped, only runs when that fails.

/// Error: the bytes seen so far cannot be the prefix of valid UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InvalidUtf8;

/// Streaming UTF-8 validator state: the incomplete code point carried over
/// from the previous chunk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Utf8Validator {
    pending: [u8; 3],
    pending_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub(crate) const fn new() -> Self {
        Self {
            pending: [0; 3],
            pending_len: 0,
        }
    }

    /// Validates the next chunk of the message.
    pub(crate) fn feed(&mut self, mut chunk: &[u8]) -> Result<(), InvalidUtf8> {
        if self.pending_len != 0 {
            chunk = self.complete_pending(chunk)?;
            if self.pending_len != 0 {
                // Still inside the carried code point; `chunk` is exhausted.
                return Ok(());
            }
        }
        if simdutf8::basic::from_utf8(chunk).is_ok() {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(chunk) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                // Valid up to an incomplete code point at the very end.
                let tail = chunk.get(e.valid_up_to()..).ok_or(InvalidUtf8)?;
                self.set_pending(tail)
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Checks that the message ended on a code point boundary and resets
    /// the validator for the next message.
    pub(crate) fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.pending_len == 0;
        *self = Self::new();
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }

    /// Combines the carried bytes with the start of `chunk` to finish the
    /// pending code point; returns the unconsumed rest of `chunk`.
    fn complete_pending<'a>(&mut self, chunk: &'a [u8]) -> Result<&'a [u8], InvalidUtf8> {
        let have = usize::from(self.pending_len);
        let take = chunk.len().min(4 - have);
        let mut tmp = [0u8; 4];
        tmp[..have].copy_from_slice(&self.pending[..have]);
        tmp[have..have + take].copy_from_slice(&chunk[..take]);
        let n = have + take;
        let valid = match std::str::from_utf8(&tmp[..n]) {
            Ok(_) => n,
            Err(e) if e.valid_up_to() > 0 => e.valid_up_to(),
            Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
            Err(_) => {
                // Still incomplete: then all of `chunk` was taken (a code
                // point is at most 4 bytes) and `n` <= 3.
                return self.set_pending(&tmp[..n]).map(|()| &chunk[chunk.len()..]);
            }
        };
        // The first code point spans the carried bytes, so `valid > have`.
        self.pending_len = 0;
        let used = valid.checked_sub(have).ok_or(InvalidUtf8)?;
        chunk.get(used..).ok_or(InvalidUtf8)
    }

    fn set_pending(&mut self, tail: &[u8]) -> Result<(), InvalidUtf8> {
        if tail.len() > self.pending.len() {
            return Err(InvalidUtf8);
        }
        self.pending[..tail.len()].copy_from_slice(tail);
        // `tail.len() <= 3`.
        self.pending_len = tail.len() as u8;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(bytes: &[u8]) -> bool {
        std::str::from_utf8(bytes).is_ok()
    }

    fn split_validate(bytes: &[u8], cuts: &[usize]) -> bool {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            if v.feed(&bytes[start..cut]).is_err() {
                return false;
            }
            start = cut;
        }
        v.finish().is_ok()
    }

    const SAMPLES: &[&[u8]] = &[
        b"",
        b"hello",
        "κόσμε".as_bytes(),
        "Hello-µ@ßöäüàá-UTF-8!!".as_bytes(),
        "\u{10FFFF}\u{10000}\u{FFFF}\u{7FF}\u{80}".as_bytes(),
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
        b"\xf4\x90\x80\x80",
        b"\xc0\xaf",
        b"\xed\xbf\xbf",
        b"\xf0\x9f\x98",
        b"a\xe2\x82",
        b"\x80abc",
        b"abc\xff",
        b"\xe2\x82\xac\xe2\x82\xac\xf0\x9f\x98\x80z",
    ];

    #[test]
    fn agrees_with_std_for_every_two_and_three_way_split() {
        for s in SAMPLES {
            let expect = whole(s);
            for a in 0..=s.len() {
                assert_eq!(split_validate(s, &[a]), expect, "{s:?} @ {a}");
                for b in a..=s.len() {
                    assert_eq!(split_validate(s, &[a, b]), expect, "{s:?} @ {a},{b}");
                }
            }
        }
    }

    #[test]
    fn byte_at_a_time() {
        for s in SAMPLES {
            let cuts: Vec<usize> = (1..s.len()).collect();
            assert_eq!(split_validate(s, &cuts), whole(s), "{s:?}");
        }
    }

    #[test]
    fn fails_fast_before_the_end() {
        // 0xF4 0x90 starts a code point above U+10FFFF: invalid right away.
        let mut v = Utf8Validator::new();
        assert!(v.feed("κόσμε".as_bytes()).is_ok());
        assert!(v.feed(b"\xf4").is_ok());
        assert_eq!(v.feed(b"\x90"), Err(InvalidUtf8));
    }

    #[test]
    fn incomplete_at_end_is_invalid_and_finish_resets() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xe2\x82").is_ok());
        assert_eq!(v.finish(), Err(InvalidUtf8));
        assert_eq!(v, Utf8Validator::new());
        assert!(v.feed(b"ok").is_ok());
        assert!(v.finish().is_ok());
    }

    #[test]
    fn state_is_small() {
        assert_eq!(std::mem::size_of::<Utf8Validator>(), 4);
    }
}
