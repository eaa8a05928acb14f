//! etcdctl's txn input: compares, a blank line, success ops, a blank line,
//! failure ops, a blank line. With `-i` each section is prompted for, as
//! etcdctl does. Lines are trimmed of white space, so a line of spaces is
//! blank; each line is parsed as it is read, and input that ends before a
//! section's blank line (or mid-line) is refused as etcdctl refuses it
//! ("EOF", exit 3): nothing is sent. Keys and values are bytes.
//!
//! ```text
//! mod("key1") > "0"
//! value("key2") = "v"
//!
//! put key1 "new value"
//! get key2 --prefix
//!
//! del key1
//!
//! ```

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStringExt;

use bytes::Bytes;
use clap::Parser;

use super::args::TxnOp;
use super::quoting::{argify, double_quoted_len, go_runes, quote, trim_space, unquote};
use super::{del_request, exit_invalid_input, get_request, put_request, Failure};
use crate::types::*;

fn invalid(message: String) -> Failure {
    Failure { code: exit_invalid_input, message }
}

pub fn read_txn(
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    interactive: bool,
) -> Result<TxnRequest, Failure> {
    let mut reader = BufReader::new(stdin);
    let mut prompt = |text: &str| {
        if interactive {
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    };
    prompt("compares:");
    let compare = read_section(&mut reader, parse_compare)?;
    prompt("success requests (get, put, del):");
    let success = read_section(&mut reader, parse_op)?;
    prompt("failure requests (get, put, del):");
    let failure = read_section(&mut reader, parse_op)?;
    Ok(TxnRequest { compare, success, failure })
}

/// The lines up to the next blank one, each parsed as it is read (so a bad
/// line is reported before a missing blank line, as etcdctl does).
fn read_section<T>(
    reader: &mut dyn BufRead,
    parse: fn(&[u8]) -> Result<T, Failure>,
) -> Result<Vec<T>, Failure> {
    let mut parsed = Vec::new();
    loop {
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line).map_err(|e| invalid(e.to_string()))?;
        if line.last() != Some(&b'\n') {
            return Err(invalid("EOF".into()));
        }
        let line = trim_space(&line);
        if line.is_empty() {
            return Ok(parsed);
        }
        parsed.push(parse(line)?);
    }
}

/// `target("key") op "value"`, as etcdctl's parseCompare: the text after the
/// first "(" is read as fmt.Sscanf reads it with `%q) %s %q`.
pub fn parse_compare(line: &[u8]) -> Result<Compare, Failure> {
    let shown = String::from_utf8_lossy(line);
    let Some(paren) = line.iter().position(|&b| b == b'(') else {
        return Err(invalid(format!("malformed comparison: {shown}")));
    };
    let target = &line[..paren];
    let (scanned, key, op, value) = scan_compare(&go_runes(&line[paren + 1..]));
    if scanned != 3 {
        return Err(invalid(format!(
            "malformed comparison: {shown}; got {}({}) {op} {}",
            String::from_utf8_lossy(target),
            quote(&key),
            quote(&value)
        )));
    }
    let malformed = || invalid(format!("malformed comparison: {shown}"));
    let result = match op.as_str() {
        "=" | "==" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        "<" => CompareResult::Less,
        ">" => CompareResult::Greater,
        _ => return Err(malformed()),
    };
    let number = |radix: u32| {
        std::str::from_utf8(&value)
            .ok()
            .and_then(|value| i64::from_str_radix(value, radix).ok())
            .ok_or_else(|| invalid(format!("invalid txn compare request: {shown}")))
    };
    let (target, number, value) = match target {
        b"ver" | b"version" => (CompareTarget::Version, number(10)?, Bytes::new()),
        b"c" | b"create" => (CompareTarget::Create, number(10)?, Bytes::new()),
        b"m" | b"mod" => (CompareTarget::Mod, number(10)?, Bytes::new()),
        b"val" | b"value" => (CompareTarget::Value, 0, Bytes::from(value)),
        b"lease" => (CompareTarget::Lease, number(16)?, Bytes::new()),
        other => {
            let other = String::from_utf8_lossy(other);
            return Err(invalid(format!("malformed comparison: {shown} (unknown target {other})")));
        }
    };
    Ok(Compare { result, target, key: Bytes::from(key), range_end: Bytes::new(), number, value })
}

/// fmt.Sscanf(text, "%q) %s %q", &key, &op, &value): how many of the three
/// were scanned, and them (those not scanned are empty).
fn scan_compare(text: &str) -> (usize, Vec<u8>, String, Vec<u8>) {
    let mut scanned = (0, Vec::new(), String::new(), Vec::new());
    let mut rest = text;
    let Some(key) = scan_quoted(&mut rest) else { return scanned };
    (scanned.0, scanned.1) = (1, key);
    // ")", then the format's space: one or more spaces, or the end of input.
    let Some(after) = rest.strip_prefix(')') else { return scanned };
    if after.starts_with(|c: char| !c.is_whitespace()) {
        return scanned;
    }
    rest = after.trim_start();
    let op_len = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if op_len == 0 {
        return scanned;
    }
    (scanned.0, scanned.2) = (2, rest[..op_len].to_string());
    rest = &rest[op_len..];
    if let Some(value) = scan_quoted(&mut rest) {
        (scanned.0, scanned.3) = (3, value);
    }
    scanned
}

/// fmt's %q: spaces skipped, then a double-quoted string (unquoted as Go
/// does) or a back-quoted one (taken as it is).
fn scan_quoted(rest: &mut &str) -> Option<Vec<u8>> {
    let text = rest.trim_start();
    if let Some(raw) = text.strip_prefix('`') {
        let end = raw.find('`')?;
        *rest = &raw[end + 1..];
        return Some(raw.as_bytes()[..end].to_vec());
    }
    if !text.starts_with('"') {
        return None;
    }
    let len = double_quoted_len(text.as_bytes())?;
    let value = unquote(&text[..len]).ok()?;
    *rest = &text[len..];
    Some(value)
}

/// `put|get|del args...` with the same flags as the commands, split into
/// words as etcdctl's argify splits them.
pub fn parse_op(line: &[u8]) -> Result<RequestOp, Failure> {
    let shown = String::from_utf8_lossy(line);
    let words = argify(line).map_err(|()| invalid("invalid syntax".into()))?;
    if words.len() < 2 {
        return Err(invalid(format!("invalid txn compare request: {shown}")));
    }
    let op = TxnOp::try_parse_from(words.into_iter().map(OsString::from_vec))
        .map_err(|_| invalid(format!("invalid txn request: {shown}")))?;
    let request = match op {
        TxnOp::Put(args) => put_request(&args, None)?,
        TxnOp::Get(args) => get_request(&args)?,
        TxnOp::Del(args) => del_request(&args)?,
    };
    Ok(match request {
        Request::Put(p) => RequestOp::Put(p),
        Request::Range(r) => RequestOp::Range(r),
        Request::DeleteRange(d) => RequestOp::DeleteRange(d),
        _ => unreachable!("txn ops are put, get and del"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<impl std::fmt::Debug, Failure>) -> (i32, String) {
        let failure = result.unwrap_err();
        (failure.code, failure.message)
    }

    #[test]
    fn compares_parse_as_etcdctl() {
        let c = parse_compare(br#"mod("key1") > "0""#).unwrap();
        assert_eq!(
            (c.target, c.result, c.number, &c.key[..]),
            (CompareTarget::Mod, CompareResult::Greater, 0, &b"key1"[..])
        );
        let c = parse_compare(br#"val("k") != "a b""#).unwrap();
        assert_eq!(
            (c.target, c.result, &c.value[..]),
            (CompareTarget::Value, CompareResult::NotEqual, &b"a b"[..])
        );
        let c = parse_compare(br#"value("a)b\xff") = `v\n` and more"#).unwrap();
        assert_eq!((&c.key[..], &c.value[..]), (&b"a)b\xff"[..], &b"v\\n"[..]));
        let c = parse_compare(b"value(\"k\xff\") = \"v\"").unwrap();
        assert_eq!(&c.key[..], "k\u{fffd}".as_bytes(), "fmt reads runes");
        assert_eq!(message(parse_compare(b"garbage")).1, "malformed comparison: garbage");
        assert!(message(parse_compare(br#"ver("k") = "x""#)).1.contains("invalid txn compare"));
    }

    #[test]
    fn malformed_compares_say_what_was_scanned() {
        for (line, got) in [
            (r#"mod("k\q") > "0""#, r#"mod("")  """#),
            (r#"mod("k1")> "0""#, r#"mod("k1")  """#),
            (r#"mod("k1") >"0""#, r#"mod("k1") >"0" """#),
            (r#"mod("k1") > 0"#, r#"mod("k1") > """#),
        ] {
            let want = format!("malformed comparison: {line}; got {got}");
            assert_eq!(message(parse_compare(line.as_bytes())), (exit_invalid_input, want));
        }
        let want = r#"malformed comparison: mod ("k") > "0" (unknown target mod )"#;
        assert_eq!(message(parse_compare(br#"mod ("k") > "0""#)).1, want);
    }

    #[test]
    fn ops_take_the_commands_flags() {
        let RequestOp::Range(r) = parse_op(b"get k --prefix").unwrap() else { panic!() };
        assert_eq!((&r.key[..], &r.range_end[..]), (&b"k"[..], &b"l"[..]));
        let RequestOp::Put(p) = parse_op(br#"put "a b" "c d""#).unwrap() else { panic!() };
        assert_eq!((&p.key[..], &p.value[..]), (&b"a b"[..], &b"c d"[..]));
        let RequestOp::Put(p) = parse_op(br#"put "k\x41\t\u00e9" "\\\"""#).unwrap() else {
            panic!()
        };
        assert_eq!((&p.key[..], &p.value[..]), (&b"kA\t\xc3\xa9"[..], &b"\\\""[..]));
        assert_eq!(parse_op(b"put a").unwrap_err().code, super::super::exit_bad_args);
        let invalid = |text: &str| (exit_invalid_input, text.to_string());
        assert_eq!(message(parse_op(br#"put "k\q" v"#)), invalid("invalid syntax"));
        assert_eq!(message(parse_op(b"bad")), invalid("invalid txn compare request: bad"));
        assert_eq!(message(parse_op(b"foo x")), invalid("invalid txn request: foo x"));
    }

    fn read(input: &[u8]) -> Result<(usize, usize, usize), Failure> {
        let t = read_txn(&mut &input[..], &mut Vec::new(), false)?;
        Ok((t.compare.len(), t.success.len(), t.failure.len()))
    }

    #[test]
    fn sections_end_at_blank_lines_and_need_them() {
        assert_eq!(read(b"mod(\"a\") = \"0\"\n\nput a 1\n\nput a 2\n\n").unwrap(), (1, 1, 1));
        assert_eq!(read(b"\nput t x\n\n\n").unwrap(), (0, 1, 0));
        assert_eq!(read(b"\n\n\nignored").unwrap(), (0, 0, 0));
        assert_eq!(read(b" \t\nput ws x\n \x0b \r\n\t\n").unwrap(), (0, 1, 0), "spaces are blank");
        for truncated in [&b""[..], b"\n\n", b"\nput t x\n", b"\nput t x\n\n", b"\n\nput a 2"] {
            let failure = read(truncated).unwrap_err();
            assert_eq!((failure.code, failure.message.as_str()), (exit_invalid_input, "EOF"));
        }
        assert_eq!(message(read(b"garbage\n")).1, "malformed comparison: garbage");
    }
}
