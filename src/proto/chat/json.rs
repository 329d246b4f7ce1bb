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
    // Room and user names need no escaping (their characters are
    // checked): copied as they are, the common case costs a scan.
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// Appends `n` in decimal.
pub fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// An epoch as clients see it: 16 lowercase hex digits.
pub fn epoch_text(epoch: u64) -> String {
    format!("{epoch:016x}")
}

/// Reads an epoch as [`epoch_text`] writes it; anything else names no
/// sequence (0, which no room has).
pub fn parse_epoch(text: &str) -> u64 {
    if text.len() == 16 {
        u64::from_str_radix(text, 16).unwrap_or(0)
    } else {
        0
    }
}

/// Deepest nesting of arrays and objects a `data` may have. serde_json (and
/// so many strict parsers) stops at 127 levels by default, and the deepest
/// place `data` is relayed to is a `history` reply, three levels down
/// (`{"messages":[{…,"data":…}]}`).
pub const MAX_DEPTH: usize = 124;

/// Why a JSON text that parsed would still break strict parsers of the
/// members it is relayed to, if it would: a `\u` escape of a UTF-16
/// surrogate that is not half of a pair (`"\ude00"`, or `"\ud83d"` alone),
/// which is not Unicode; nesting deeper than [`MAX_DEPTH`]; or a number
/// beyond a 64-bit float (`1e999`: JSON's grammar takes it, but serde_json
/// and Go's encoding/json refuse it, and JavaScript reads `Infinity`). One
/// client could otherwise make every member's parser fail on its message.
pub fn relay_problem(json: &str) -> Option<&'static str> {
    let b = json.as_bytes();
    let hex4 = |i: usize| -> Option<u16> {
        let digits = std::str::from_utf8(b.get(i..i + 4)?).ok()?;
        u16::from_str_radix(digits, 16).ok()
    };
    let (mut depth, mut in_string) = (0usize, false);
    let mut i = 0;
    while i < b.len() {
        match (b[i], in_string) {
            (b'"', _) => in_string = !in_string,
            (b'[' | b'{', false) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some("data nests arrays and objects deeper than 124 levels");
                }
            }
            (b']' | b'}', false) => depth = depth.saturating_sub(1),
            (b'-' | b'0'..=b'9', false) => {
                let (mut end, mut exp) = (i, false);
                while let Some(&c) = b.get(end) {
                    match c {
                        b'0'..=b'9' | b'-' | b'+' | b'.' => {}
                        b'e' | b'E' => exp = true,
                        _ => break,
                    }
                    end += 1;
                }
                if !finite(&json[i..end], exp) {
                    return Some(OUT_OF_RANGE);
                }
                i = end;
                continue;
            }
            (b'\\', true) if b.get(i + 1) == Some(&b'u') => {
                match hex4(i + 2) {
                    Some(0xD800..=0xDBFF) => {
                        let low = (b.get(i + 6) == Some(&b'\\') && b.get(i + 7) == Some(&b'u'))
                            .then(|| hex4(i + 8))
                            .flatten();
                        if !matches!(low, Some(0xDC00..=0xDFFF)) {
                            return Some(LONE_SURROGATE);
                        }
                        i += 12;
                    }
                    Some(0xDC00..=0xDFFF) => return Some(LONE_SURROGATE),
                    _ => i += 6,
                }
                continue;
            }
            // `\\`, `\"`, `\n`…: the escaped byte is never a `\` that
            // starts an escape, nor a quote that ends the string.
            (b'\\', true) => i += 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// A number token (as the parser took it; `exp` if it has an exponent)
/// that a 64-bit float holds. Only one with an exponent, or over 300
/// characters, can be beyond `f64::MAX` (about 1.8e308): the rest need no
/// parse.
fn finite(number: &str, exp: bool) -> bool {
    !(exp || number.len() > 300) || number.parse::<f64>().is_ok_and(f64::is_finite)
}

const OUT_OF_RANGE: &str = "data has a number beyond a 64-bit float, which strict parsers refuse";

const LONE_SURROGATE: &str =
    "data has a \\u escape of a lone UTF-16 surrogate, which is not Unicode";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_str_writes_what_serde_json_writes() {
        for s in [
            "lobby",
            "team:42@x.y-z_",
            "",
            "ann \u{e9}\u{1F600}",
            "q\"uote",
            "back\\slash",
            "tab\tnl\n",
            "\u{7f}\u{2028}",
        ] {
            let mut out = Vec::new();
            push_str(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn minify_keeps_strings() {
        assert!(matches!(minify(r#"{"a":1}"#), Cow::Borrowed(_)));
        assert_eq!(
            minify("{ \"a b\" : [1, \"x\\\" y\"] }"),
            r#"{"a b":[1,"x\" y"]}"#
        );
    }

    #[test]
    fn epochs_round_trip() {
        assert_eq!(parse_epoch(&epoch_text(u64::MAX - 1)), u64::MAX - 1);
        assert_eq!(epoch_text(0xab), "00000000000000ab");
        assert_eq!(parse_epoch("xyz"), 0);
        assert_eq!(parse_epoch("000000000000000g"), 0);
    }

    fn has_lone_surrogate(json: &str) -> bool {
        relay_problem(json) == Some(LONE_SURROGATE)
    }

    #[test]
    fn numbers_beyond_a_double_are_found_where_serde_json_refuses_them() {
        let big_digits = format!("[1{}]", "0".repeat(400));
        for (json, refused) in [
            (
                "[1e308, -1.7976931348623157e308, 1e-999, 0, -0.5, 123456789012345678901234567890]",
                false,
            ),
            ("[1e309]", true),
            ("{\"n\":-2E+400}", true),
            (big_digits.as_str(), true),
            (
                "[1444444444444444444444E444444444444444\r, 2.5, null]",
                true,
            ),
            // In a string it is text.
            ("\"1e999\"", false),
        ] {
            let strict = serde_json::from_str::<serde_json::Value>(json).is_err();
            assert_eq!(strict, refused, "serde_json on {json}");
            assert_eq!(relay_problem(json) == Some(OUT_OF_RANGE), refused, "{json}");
        }
    }

    #[test]
    fn nesting_past_what_strict_parsers_take_is_found() {
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(relay_problem(&nest(MAX_DEPTH)), None);
        assert!(relay_problem(&nest(MAX_DEPTH + 1)).is_some());
        // The deepest a history reply can then be still parses strictly,
        // one level more would not.
        let history = |n| format!(r#"{{"messages":[{{"data":{}}}]}}"#, nest(n));
        assert!(serde_json::from_str::<serde_json::Value>(&history(MAX_DEPTH)).is_ok());
        assert!(serde_json::from_str::<serde_json::Value>(&history(MAX_DEPTH + 1)).is_err());
        // Brackets inside strings are text.
        let text = format!("\"{}\"", "[".repeat(1000));
        assert_eq!(relay_problem(&text), None);
        let escaped = format!("[\"\\\"{}\"]", "{".repeat(1000));
        assert_eq!(relay_problem(&escaped), None);
    }

    #[test]
    fn lone_surrogates_are_found() {
        for bad in [
            r#""\ude00""#,
            r#""\ud30d\ude00""#,
            r#""\ud83d""#,
            r#""\ud83dx""#,
            r#""\ud83d\u0041""#,
            r#"{"a":["\udfff"]}"#,
            r#""\\\ud800""#,
        ] {
            assert!(has_lone_surrogate(bad), "{bad}");
        }
        for good in [
            r#""\ud83d\ude00""#,
            r#""\\ud800""#,
            r#""\u00e9 \\\\ \" \ud7ff \ue000""#,
            r#"{"k":1}"#,
            r#""é😀""#,
            r#""\u""#,
        ] {
            assert!(!has_lone_surrogate(good), "{good}");
        }
        // What the check lets through, a strict parser takes.
        for good in [r#""\ud83d\ude00""#, r#""\\ud800""#] {
            serde_json::from_str::<String>(good).unwrap();
        }
        for bad in [r#""\ude00""#, r#""\ud83d""#] {
            assert!(serde_json::from_str::<String>(bad).is_err());
        }
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
