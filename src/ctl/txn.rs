//! etcdctl's txn input: compares, a blank line, success ops, a blank line,
//! failure ops, a blank line (or the end of input). With `-i` each section is
//! prompted for, as etcdctl does.
//!
//! ```text
//! mod("key1") > "0"
//! value("key2") = "v"
//!
//! put key1 "new value"
//! get key2 --prefix
//!
//! del key1
//! ```

use std::io::{BufRead, BufReader, Read, Write};

use bytes::Bytes;
use clap::Parser;

use super::args::TxnOp;
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
    let compare =
        read_section(&mut reader)?.iter().map(|l| parse_compare(l)).collect::<Result<_, _>>()?;
    prompt("success requests (get, put, del):");
    let success =
        read_section(&mut reader)?.iter().map(|l| parse_op(l)).collect::<Result<_, _>>()?;
    prompt("failure requests (get, put, del):");
    let failure =
        read_section(&mut reader)?.iter().map(|l| parse_op(l)).collect::<Result<_, _>>()?;
    Ok(TxnRequest { compare, success, failure })
}

/// Lines up to the next blank line or the end of input.
fn read_section(reader: &mut dyn BufRead) -> Result<Vec<String>, Failure> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).map_err(|e| invalid(e.to_string()))?;
        let trimmed = line.trim_end_matches(['\n', '\r']);
        if n == 0 || trimmed.is_empty() {
            return Ok(lines);
        }
        lines.push(trimmed.to_string());
    }
}

/// Splits a line into words; double-quoted words may hold spaces and Go
/// escapes (\" \\ \n \t).
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '"' {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated quote in {line:?}")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => word.push('\n'),
                        Some('t') => word.push('\t'),
                        Some(other) => word.push(other),
                        None => return Err(format!("unterminated quote in {line:?}")),
                    },
                    Some(other) => word.push(other),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    Ok(words)
}

/// `target("key") op "value"`, as etcdctl's parseCompare.
pub fn parse_compare(line: &str) -> Result<Compare, Failure> {
    let malformed = || invalid(format!("malformed comparison: {line}"));
    let (target, rest) = line.split_once('(').ok_or_else(malformed)?;
    let (key_part, rest) = rest.split_once(')').ok_or_else(malformed)?;
    let key = split_words(key_part).map_err(|_| malformed())?;
    let rest = split_words(rest).map_err(|_| malformed())?;
    let (Some(key), [op, value]) = (key.first(), rest.as_slice()) else { return Err(malformed()) };
    let result = match op.as_str() {
        "=" | "==" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        "<" => CompareResult::Less,
        ">" => CompareResult::Greater,
        _ => return Err(malformed()),
    };
    let number = |radix: u32| {
        i64::from_str_radix(value, radix)
            .map_err(|_| invalid(format!("invalid txn compare request: {line}")))
    };
    let (target, number, value) = match target.trim() {
        "ver" | "version" => (CompareTarget::Version, number(10)?, Bytes::new()),
        "c" | "create" => (CompareTarget::Create, number(10)?, Bytes::new()),
        "m" | "mod" => (CompareTarget::Mod, number(10)?, Bytes::new()),
        "val" | "value" => (CompareTarget::Value, 0, Bytes::from(value.clone().into_bytes())),
        "lease" => (CompareTarget::Lease, number(16)?, Bytes::new()),
        other => {
            return Err(invalid(format!("malformed comparison: {line} (unknown target {other})")))
        }
    };
    Ok(Compare {
        result,
        target,
        key: Bytes::from(key.clone().into_bytes()),
        range_end: Bytes::new(),
        number,
        value,
    })
}

/// `put|get|del args...` with the same flags as the commands.
pub fn parse_op(line: &str) -> Result<RequestOp, Failure> {
    let words = split_words(line).map_err(invalid)?;
    let op = TxnOp::try_parse_from(&words)
        .map_err(|e| Failure::bad_args(format!("invalid txn request: {line}: {}", e.kind())))?;
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

    #[test]
    fn compares_parse_as_etcdctl() {
        let c = parse_compare(r#"mod("key1") > "0""#).unwrap();
        assert_eq!(
            (c.target, c.result, c.number, &c.key[..]),
            (CompareTarget::Mod, CompareResult::Greater, 0, &b"key1"[..])
        );
        let c = parse_compare(r#"val("k") != "a b""#).unwrap();
        assert_eq!(
            (c.target, c.result, &c.value[..]),
            (CompareTarget::Value, CompareResult::NotEqual, &b"a b"[..])
        );
        assert_eq!(parse_compare("garbage").unwrap_err().message, "malformed comparison: garbage");
        assert!(parse_compare(r#"ver("k") = "x""#)
            .unwrap_err()
            .message
            .contains("invalid txn compare"));
    }

    #[test]
    fn ops_take_the_commands_flags() {
        let RequestOp::Range(r) = parse_op("get k --prefix").unwrap() else { panic!() };
        assert_eq!((&r.key[..], &r.range_end[..]), (&b"k"[..], &b"l"[..]));
        let RequestOp::Put(p) = parse_op(r#"put "a b" "c d""#).unwrap() else { panic!() };
        assert_eq!((&p.key[..], &p.value[..]), (&b"a b"[..], &b"c d"[..]));
        assert_eq!(parse_op("put a").unwrap_err().code, super::super::exit_bad_args);
    }

    #[test]
    fn sections_end_at_blank_lines_or_the_end() {
        let input = "mod(\"a\") = \"0\"\n\nput a 1\n\nput a 2\n";
        let t = read_txn(&mut input.as_bytes(), &mut Vec::new(), false).unwrap();
        assert_eq!((t.compare.len(), t.success.len(), t.failure.len()), (1, 1, 1));
    }
}
