//! JSON text helpers shared by the request and reply sides.

use std::borrow::Cow;

/// Removes insignificant whitespace from valid JSON text; borrows when there
/// is none (the common case for machine-written messages).
pub fn minify(json: &str) -> Cow<'_, str> {
    let bytes = json.as_bytes();
    let mut in_string = false;
    let mut escaped = false;
    let needs = bytes.iter().any(|&b| {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            false
        } else if b == b'"' {
            in_string = true;
            false
        } else {
            matches!(b, b' ' | b'\n' | b'\r' | b'\t')
        }
    });
    if !needs {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\n' | '\r' | '\t') {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Appends `s` as a JSON string.
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// Appends `n` in decimal.
pub fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minify_keeps_strings() {
        assert!(matches!(minify(r#"{"a":1}"#), Cow::Borrowed(_)));
        assert_eq!(
            minify("{ \"a b\" : [1, \"x\\\" y\"] }"),
            r#"{"a b":[1,"x\" y"]}"#
        );
    }

    #[test]
    fn numbers() {
        let text = |n| {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(0), "0");
        assert_eq!(text(u64::MAX), u64::MAX.to_string());
    }
}
