//! Inline requests (a line as typed into telnet or `nc`), split into
//! arguments with Redis's quoting rules (`sdssplitargs`).

use bytes::Bytes;

/// C `isspace` in the C locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex_val(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Redis's `sdssplitargs`: blanks separate arguments; `"..."` supports
/// `\n \r \t \b \a \xHH` and `\<c>` escapes; `'...'` supports `\'`. A closing
/// quote must be followed by a blank or the end. `None`: unbalanced quotes.
/// Like the C code (which sees a C string) the line ends at a NUL byte.
pub fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    let line = match line.iter().position(|&b| b == 0) {
        Some(i) => line.get(..i).unwrap_or_default(),
        None => line,
    };
    let mut args = Vec::new();
    let mut p = 0;
    loop {
        while line.get(p).is_some_and(|&b| is_space(b)) {
            p += 1;
        }
        if p >= line.len() {
            return Some(args);
        }
        let mut arg = Vec::new();
        p = one_arg(line, p, &mut arg)?;
        args.push(Bytes::from(arg));
    }
}

/// The byte at `i`, or 0 past the end (the C string's terminator).
fn at(line: &[u8], i: usize) -> u8 {
    line.get(i).copied().unwrap_or(0)
}

/// Reads the argument that starts at `p` into `arg`; returns where the
/// next one may start. Bare text ends at a blank; a quoted part ends the
/// argument at its closing quote.
fn one_arg(line: &[u8], mut p: usize, arg: &mut Vec<u8>) -> Option<usize> {
    loop {
        match at(line, p) {
            b' ' | b'\n' | b'\r' | b'\t' => return Some(p + 1),
            0 => return Some(p),
            b'"' => return double_quoted(line, p + 1, arg),
            b'\'' => return single_quoted(line, p + 1, arg),
            c => {
                arg.push(c);
                p += 1;
            }
        }
    }
}

/// The inside of `"..."` from `p`, escapes resolved; returns the position
/// after the closing quote.
fn double_quoted(line: &[u8], mut p: usize, arg: &mut Vec<u8>) -> Option<usize> {
    loop {
        match at(line, p) {
            0 => return None,
            b'"' => return closing(line, p),
            b'\\' => {
                let hex = (at(line, p + 1) == b'x')
                    .then(|| Some(hex_val(at(line, p + 2))? * 16 + hex_val(at(line, p + 3))?))
                    .flatten();
                match (hex, at(line, p + 1)) {
                    (Some(byte), _) => {
                        arg.push(byte);
                        p += 4;
                    }
                    // A backslash that ends the line leaves the quote open.
                    (None, 0) => return None,
                    (None, c) => {
                        arg.push(match c {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                        p += 2;
                    }
                }
            }
            c => {
                arg.push(c);
                p += 1;
            }
        }
    }
}

/// The inside of `'...'` from `p` (only `\'` is an escape); returns the
/// position after the closing quote.
fn single_quoted(line: &[u8], mut p: usize, arg: &mut Vec<u8>) -> Option<usize> {
    loop {
        match at(line, p) {
            0 => return None,
            b'\\' if at(line, p + 1) == b'\'' => {
                arg.push(b'\'');
                p += 2;
            }
            b'\'' => return closing(line, p),
            c => {
                arg.push(c);
                p += 1;
            }
        }
    }
}

/// A closing quote at `p` must be followed by a blank or the end.
fn closing(line: &[u8], p: usize) -> Option<usize> {
    let next = at(line, p + 1);
    (next == 0 || is_space(next)).then_some(p + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Option<Vec<String>> {
        split_args(line.as_bytes()).map(|args| {
            args.iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
    }

    #[test]
    fn quoting_as_redis_does_it() {
        assert_eq!(split("a  b\tc").unwrap(), ["a", "b", "c"]);
        assert_eq!(split("\"a b\" 'c d'").unwrap(), ["a b", "c d"]);
        assert_eq!(split("x\"y z\"").unwrap(), ["xy z"]);
        assert_eq!(split("\"\\x41\\n\\q\"").unwrap(), ["A\nq"]);
        assert_eq!(split("'it\\'s'").unwrap(), ["it's"]);
        assert_eq!(split("\"\"").unwrap(), [""]);
        assert_eq!(split("   ").unwrap(), Vec::<String>::new());
        assert_eq!(split("\"unclosed"), None);
        assert_eq!(split("\"a\"b"), None);
        assert_eq!(split("'a'b"), None);
        assert_eq!(split("\"a\\"), None);
    }
}
