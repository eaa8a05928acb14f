//! Go's string rules as etcdctl's txn input meets them: lines trimmed with
//! strings.TrimSpace, op lines split by etcdctl's argify, double-quoted words
//! decoded as strconv.Unquote decodes them, and %q for error messages.
//!
//! Everything works on bytes: keys and values need not be UTF-8. Where etcdctl
//! reads a word through fmt.Sscanf (quoted words, compares), Go reads runes,
//! so each byte of invalid UTF-8 there becomes U+FFFD first (`go_runes`);
//! unquoted op words keep their bytes.

/// The first rune of `bytes` and its length, as Go's utf8.DecodeRune: None
/// (RuneError) with length 1 for a byte that does not start valid UTF-8.
fn first_rune(bytes: &[u8]) -> (Option<char>, usize) {
    let head = &bytes[..bytes.len().min(4)];
    let valid = match std::str::from_utf8(head) {
        Ok(text) => text,
        // Safe: the prefix up to valid_up_to is valid UTF-8.
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default(),
    };
    match valid.chars().next() {
        Some(c) => (Some(c), c.len_utf8()),
        None => (None, 1),
    }
}

/// The last rune of `bytes` and its length, as Go's utf8.DecodeLastRune.
fn last_rune(bytes: &[u8]) -> (Option<char>, usize) {
    for width in 1..=bytes.len().min(4) {
        if let Ok(text) = std::str::from_utf8(&bytes[bytes.len() - width..]) {
            let mut chars = text.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                return (Some(c), width);
            }
        }
    }
    (None, 1)
}

/// Go's strings.TrimSpace: Unicode white space off both ends (Go's
/// unicode.IsSpace is the White_Space property, as Rust's is_whitespace).
pub fn trim_space(mut bytes: &[u8]) -> &[u8] {
    while !bytes.is_empty() {
        match first_rune(bytes) {
            (Some(c), width) if c.is_whitespace() => bytes = &bytes[width..],
            _ => break,
        }
    }
    while !bytes.is_empty() {
        match last_rune(bytes) {
            (Some(c), width) if c.is_whitespace() => bytes = &bytes[..bytes.len() - width],
            _ => break,
        }
    }
    bytes
}

/// `bytes` as Go reads it rune by rune: each byte of invalid UTF-8 becomes
/// U+FFFD, so the result is valid UTF-8.
pub fn go_runes(mut bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    while !bytes.is_empty() {
        let (rune, width) = first_rune(bytes);
        text.push(rune.unwrap_or(char::REPLACEMENT_CHARACTER));
        bytes = &bytes[width..];
    }
    text
}

/// The white space of Go's regexp `\s` (ASCII only), which argify splits on.
fn is_regexp_space(byte: u8) -> bool {
    matches!(byte, b'\t' | b'\n' | 0x0c | b'\r' | b' ')
}

/// etcdctl's argify: the words of an op line, as its regular expression
/// `"(?:[^"\\]|\\.)*"|'[^']*'|[^'"\s]\S*[^'"\s]?` finds them, leftmost
/// first. A quote with no closing quote matches nothing and is skipped.
/// Double-quoted words are unquoted (an invalid one is an error);
/// single-quoted ones lose their quotes (etcdctl 3.4 slices them by the
/// number of words instead, a bug not copied here).
pub fn argify(line: &[u8]) -> Result<Vec<Vec<u8>>, ()> {
    let mut words = Vec::new();
    let mut at = 0;
    while at < line.len() {
        let byte = line[at];
        if is_regexp_space(byte) {
            at += 1;
        } else if byte == b'"' {
            match double_quoted_len(&line[at..]) {
                Some(len) => {
                    words.push(unquote(&go_runes(&line[at..at + len]))?);
                    at += len;
                }
                None => at += 1,
            }
        } else if byte == b'\'' {
            match line[at + 1..].iter().position(|&b| b == b'\'') {
                Some(len) => {
                    words.push(line[at + 1..at + 1 + len].to_vec());
                    at += len + 2;
                }
                None => at += 1,
            }
        } else {
            let len = line[at..].iter().position(|&b| is_regexp_space(b));
            let end = len.map_or(line.len(), |len| at + len);
            words.push(line[at..end].to_vec());
            at = end;
        }
    }
    Ok(words)
}

/// The length of the double-quoted word at the start of `bytes` (quotes
/// included): escapes protect the next byte, except a newline.
pub fn double_quoted_len(bytes: &[u8]) -> Option<usize> {
    let mut at = 1;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => return Some(at + 1),
            b'\\' if bytes.get(at + 1).is_some_and(|&b| b != b'\n') => at += 2,
            b'\\' => return None,
            _ => at += 1,
        }
    }
    None
}

/// Go's strconv.Unquote of a double-quoted string: the escapes \a \b \f \n
/// \r \t \v \\ \" \xNN \NNN (octal, at most 0377) \uNNNN \UNNNNNNNN (a valid
/// code point); \x and octal give one byte, so the result need not be UTF-8.
pub fn unquote(quoted: &str) -> Result<Vec<u8>, ()> {
    if quoted.len() < 2 || !quoted.starts_with('"') || !quoted.ends_with('"') {
        return Err(());
    }
    let inner = &quoted[1..quoted.len() - 1];
    let mut out = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\n' => return Err(()),
            '\\' => unescape(&mut chars, &mut out)?,
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    Ok(out)
}

/// One escape after its backslash, appended to `out`.
fn unescape(chars: &mut std::str::Chars, out: &mut Vec<u8>) -> Result<(), ()> {
    fn digits(chars: &mut std::str::Chars, count: usize, radix: u32) -> Result<u32, ()> {
        (0..count).try_fold(0u32, |value, _| {
            let digit = chars.next().and_then(|c| c.to_digit(radix)).ok_or(())?;
            Ok(value * radix + digit)
        })
    }
    let c = chars.clone().next().ok_or(())?;
    let simple = match c {
        'a' => Some(0x07),
        'b' => Some(0x08),
        'f' => Some(0x0c),
        'n' => Some(b'\n'),
        'r' => Some(b'\r'),
        't' => Some(b'\t'),
        'v' => Some(0x0b),
        '\\' => Some(b'\\'),
        '"' => Some(b'"'),
        _ => None,
    };
    if let Some(byte) = simple {
        chars.next();
        out.push(byte);
        return Ok(());
    }
    match c {
        'x' | 'u' | 'U' => {
            chars.next();
            let count = match c {
                'x' => 2,
                'u' => 4,
                _ => 8,
            };
            let value = digits(chars, count, 16)?;
            if c == 'x' {
                out.push(value as u8);
            } else {
                let rune = char::from_u32(value).ok_or(())?;
                out.extend_from_slice(rune.encode_utf8(&mut [0; 4]).as_bytes());
            }
        }
        '0'..='7' => {
            let value = digits(chars, 3, 8)?;
            out.push(u8::try_from(value).map_err(|_| ())?);
        }
        _ => return Err(()),
    }
    Ok(())
}

/// Go's %q of `bytes` (strconv.Quote), for etcdctl's error messages. Go's
/// IsPrint is approximated by "not a control character nor white space"
/// outside ASCII.
pub fn quote(bytes: &[u8]) -> String {
    let mut text = String::from("\"");
    let mut rest = bytes;
    while !rest.is_empty() {
        let (rune, width) = first_rune(rest);
        match rune {
            None => text.push_str(&format!("\\x{:02x}", rest[0])),
            Some('"') => text.push_str("\\\""),
            Some('\\') => text.push_str("\\\\"),
            Some(c) if c == ' ' || c.is_ascii_graphic() => text.push(c),
            Some(c) if !c.is_ascii() && !c.is_control() && !c.is_whitespace() => text.push(c),
            Some('\x07') => text.push_str("\\a"),
            Some('\x08') => text.push_str("\\b"),
            Some('\x0c') => text.push_str("\\f"),
            Some('\n') => text.push_str("\\n"),
            Some('\r') => text.push_str("\\r"),
            Some('\t') => text.push_str("\\t"),
            Some('\x0b') => text.push_str("\\v"),
            Some(c) if (c as u32) < 0x80 => text.push_str(&format!("\\x{:02x}", c as u32)),
            Some(c) if (c as u32) < 0x10000 => text.push_str(&format!("\\u{:04x}", c as u32)),
            Some(c) => text.push_str(&format!("\\U{:08x}", c as u32)),
        }
        rest = &rest[width..];
    }
    text.push('"');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unquoted(text: &str) -> Result<Vec<u8>, ()> {
        unquote(text)
    }

    #[test]
    fn unquote_decodes_gos_escapes() {
        let all = r#""\a\b\f\n\r\t\v\\\"\x41\101\u00e9\U0001F600""#;
        let mut want = b"\x07\x08\x0c\n\r\t\x0b\\\"AA\xc3\xa9".to_vec();
        want.extend_from_slice("😀".as_bytes());
        assert_eq!(unquoted(all), Ok(want));
        assert_eq!(unquoted(r#""k\xff\377""#), Ok(b"k\xff\xff".to_vec()), "bytes, not runes");
        assert_eq!(unquoted("\"é\""), Ok("é".as_bytes().to_vec()));
        for bad in [
            r#""k\q""#,
            r#""k\'""#,
            r#""\400""#,
            r#""\12""#,
            r#""\x4""#,
            r#""\xg0""#,
            r#""\ud800""#,
            r#""\U00110000""#,
            r#""\""#,
            "\"a",
            "\"",
            "'a'",
        ] {
            assert_eq!(unquoted(bad), Err(()), "{bad}");
        }
    }

    #[test]
    fn argify_splits_as_etcdctls_expression() {
        let words = |line: &[u8]| argify(line).unwrap();
        assert_eq!(words(br#"put "a b" c"#), [&b"put"[..], b"a b", b"c"]);
        assert_eq!(words(br#"put "a"b c"#), [&b"put"[..], b"a", b"b", b"c"]);
        assert_eq!(words(br#"put a"b c""#), [&b"put"[..], b"a\"b", b"c\""]);
        assert_eq!(words(br#"put "abc d"#), [&b"put"[..], b"abc", b"d"], "an open quote");
        assert_eq!(words(b"put 'a b' c"), [&b"put"[..], b"a b", b"c"]);
        assert_eq!(words(b"put\x0bk v"), [&b"put\x0bk"[..], b"v"], "\\v does not split");
        assert_eq!(words(b"put \xffk \"\\xfe\""), [&b"put"[..], b"\xffk", b"\xfe"]);
        assert_eq!(words(b"put \"\xffk\" v"), [&b"put"[..], "\u{fffd}k".as_bytes(), b"v"]);
        assert_eq!(argify(br#"put "k\q" v"#), Err(()));
    }

    #[test]
    fn trim_space_and_go_runes_as_go() {
        assert_eq!(trim_space(b" \t\x0b\xc2\xa0a b\xe3\x80\x80\r"), b"a b");
        assert_eq!(trim_space(b"\xff \xff"), b"\xff \xff");
        assert_eq!(trim_space(b"  \t "), b"");
        assert_eq!(go_runes(b"a\xe2\x82b\xff"), "a\u{fffd}\u{fffd}b\u{fffd}");
    }

    #[test]
    fn quote_is_gos_percent_q() {
        assert_eq!(quote(b""), r#""""#);
        let bytes = [&b"a\"\\\n\x01\x7f\xff"[..], "é\u{a0}".as_bytes()].concat();
        assert_eq!(quote(&bytes), r#""a\"\\\n\x01\x7f\xffé\u00a0""#);
    }
}
