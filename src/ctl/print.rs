//! etcdctl's output formats. `simple` prints keys and values as raw bytes;
//! `json` is the JSON etcdctl marshals from etcd's protobuf structs: fields in
//! proto order, zero values left out, bytes in base64.

use base64::Engine;

use super::args::OutputFormat;
use crate::types::*;

#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    pub value_only: bool,
    pub count_only: bool,
    /// `lease timetolive --keys`.
    pub keys: bool,
}

pub fn response(
    format: OutputFormat,
    header: &ResponseHeader,
    body: &ResponseBody,
    options: Options,
) -> Vec<u8> {
    let mut out = Vec::new();
    match format {
        OutputFormat::Json => {
            out.extend_from_slice(json_body(header, body).as_bytes());
            out.push(b'\n');
        }
        _ => simple(&mut out, body, options),
    }
    out
}

fn line(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes);
    out.push(b'\n');
}

fn simple_kv(out: &mut Vec<u8>, kv: &KeyValue, value_only: bool) {
    if !value_only {
        line(out, &kv.key);
    }
    line(out, &kv.value);
}

fn simple(out: &mut Vec<u8>, body: &ResponseBody, options: Options) {
    match body {
        ResponseBody::Put(p) => simple_put(out, p),
        ResponseBody::Range(r) if options.count_only => line(out, r.count.to_string().as_bytes()),
        ResponseBody::Range(r) => simple_range(out, r, options.value_only),
        ResponseBody::DeleteRange(d) => simple_delete(out, d),
        ResponseBody::Txn(t) => simple_txn(out, t),
        ResponseBody::Compact | ResponseBody::Status(_) | ResponseBody::Snapshot(_) => {}
        ResponseBody::Watch(w) => simple_watch(out, w),
        ResponseBody::LeaseGrant(g) => {
            line(out, format!("lease {:016x} granted with TTL({}s)", g.id, g.ttl).as_bytes())
        }
        ResponseBody::LeaseKeepAlive(k) => {
            line(out, format!("lease {:016x} keepalived with TTL({})", k.id, k.ttl).as_bytes())
        }
        ResponseBody::LeaseTimeToLive(t) => simple_time_to_live(out, t, options.keys),
        ResponseBody::LeaseLeases(ids) => {
            line(out, format!("found {} leases", ids.len()).as_bytes());
            for id in ids {
                line(out, format!("{id:016x}").as_bytes());
            }
        }
        // Printed by the command, which knows the id.
        ResponseBody::LeaseRevoke | ResponseBody::LeaseCheckpoint => {}
    }
}

/// etcdctl's `lease timetolive` line (keys printed as Go prints a []string).
fn simple_time_to_live(out: &mut Vec<u8>, t: &LeaseTimeToLiveResponse, keys: bool) {
    if t.granted_ttl == 0 && t.ttl == -1 {
        return line(out, format!("lease {:016x} already expired", t.id).as_bytes());
    }
    let mut text =
        format!("lease {:016x} granted with TTL({}s), remaining({}s)", t.id, t.granted_ttl, t.ttl)
            .into_bytes();
    if keys {
        text.extend_from_slice(b", attached keys([");
        for (i, key) in t.keys.iter().enumerate() {
            if i > 0 {
                text.push(b' ');
            }
            text.extend_from_slice(key);
        }
        text.extend_from_slice(b"])");
    }
    line(out, &text)
}

/// etcdctl's watch output: per event its type, then the previous
/// version's key and value if asked for, then the key and value.
fn simple_watch(out: &mut Vec<u8>, w: &WatchResponse) {
    for event in &w.events {
        line(out, if event.kind == EventType::Put { b"PUT" } else { b"DELETE" });
        if let Some(prev) = &event.prev_kv {
            simple_kv(out, prev, false);
        }
        simple_kv(out, &event.kv, false);
    }
}

fn simple_put(out: &mut Vec<u8>, p: &PutResponse) {
    line(out, b"OK");
    if let Some(kv) = &p.prev_kv {
        simple_kv(out, kv, false);
    }
}

fn simple_range(out: &mut Vec<u8>, r: &RangeResponse, value_only: bool) {
    for kv in &r.kvs {
        simple_kv(out, kv, value_only);
    }
}

fn simple_delete(out: &mut Vec<u8>, d: &DeleteRangeResponse) {
    line(out, d.deleted.to_string().as_bytes());
    for kv in &d.prev_kvs {
        simple_kv(out, kv, false);
    }
}

fn simple_txn(out: &mut Vec<u8>, t: &TxnResponse) {
    line(out, if t.succeeded { b"SUCCESS" } else { b"FAILURE" });
    for op in &t.responses {
        out.push(b'\n');
        match op {
            ResponseOp::Put(p) => simple_put(out, p),
            ResponseOp::Range(r) => simple_range(out, r, false),
            ResponseOp::DeleteRange(d) => simple_delete(out, d),
            ResponseOp::Txn(inner) => simple_txn(out, inner),
        }
    }
}

/// A JSON object writer that leaves out zero fields, as Go's omitempty does.
struct Object(String);

impl Object {
    fn new() -> Object {
        Object(String::from("{"))
    }

    fn raw(&mut self, name: &str, value: &str) -> &mut Object {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str(&serde_json::to_string(name).unwrap());
        self.0.push(':');
        self.0.push_str(value);
        self
    }

    fn number(&mut self, name: &str, value: impl Into<i128>) -> &mut Object {
        let value = value.into();
        if value != 0 {
            self.raw(name, &value.to_string());
        }
        self
    }

    fn flag(&mut self, name: &str, value: bool) -> &mut Object {
        if value {
            self.raw(name, "true");
        }
        self
    }

    fn bytes(&mut self, name: &str, value: &[u8]) -> &mut Object {
        if !value.is_empty() {
            let encoded = base64::engine::general_purpose::STANDARD.encode(value);
            self.raw(name, &serde_json::to_string(&encoded).unwrap());
        }
        self
    }

    fn string(&mut self, name: &str, value: &str) -> &mut Object {
        if !value.is_empty() {
            self.raw(name, &serde_json::to_string(value).unwrap());
        }
        self
    }

    fn list(&mut self, name: &str, items: Vec<String>) -> &mut Object {
        if !items.is_empty() {
            self.raw(name, &format!("[{}]", items.join(",")));
        }
        self
    }

    fn done(&mut self) -> String {
        let mut s = std::mem::take(&mut self.0);
        s.push('}');
        s
    }
}

fn json_header(h: &ResponseHeader) -> String {
    Object::new()
        .number("cluster_id", h.cluster_id)
        .number("member_id", h.member_id)
        .number("revision", h.revision)
        .number("raft_term", h.raft_term)
        .done()
}

fn revision_header(revision: i64) -> ResponseHeader {
    ResponseHeader { revision, ..Default::default() }
}

fn json_kv(kv: &KeyValue) -> String {
    Object::new()
        .bytes("key", &kv.key)
        .number("create_revision", kv.create_revision)
        .number("mod_revision", kv.mod_revision)
        .number("version", kv.version)
        .bytes("value", &kv.value)
        .number("lease", kv.lease)
        .done()
}

/// etcdctl's watch JSON: clientv3's WatchResponse as Go marshals it (its
/// own fields capitalized and always present; events and keys as etcd's).
fn json_watch(header: &ResponseHeader, w: &WatchResponse) -> String {
    let events: Vec<String> = w
        .events
        .iter()
        .map(|event| {
            let mut object = Object::new();
            object.number("type", i64::from(event.kind == EventType::Delete));
            object.raw("kv", &json_kv(&event.kv));
            if let Some(prev) = &event.prev_kv {
                object.raw("prev_kv", &json_kv(prev));
            }
            object.done()
        })
        .collect();
    Object::new()
        .raw("Header", &json_header(header))
        .raw("Events", &format!("[{}]", events.join(",")))
        .raw("CompactRevision", &w.compact_revision.to_string())
        .raw("Canceled", if w.canceled { "true" } else { "false" })
        .raw("Created", if w.created { "true" } else { "false" })
        .done()
}

fn json_range(header: &ResponseHeader, r: &RangeResponse) -> String {
    Object::new()
        .raw("header", &json_header(header))
        .list("kvs", r.kvs.iter().map(json_kv).collect())
        .flag("more", r.more)
        .number("count", r.count)
        .done()
}

fn json_put(header: &ResponseHeader, p: &PutResponse) -> String {
    let mut o = Object::new();
    o.raw("header", &json_header(header));
    if let Some(kv) = &p.prev_kv {
        o.raw("prev_kv", &json_kv(kv));
    }
    o.done()
}

fn json_delete(header: &ResponseHeader, d: &DeleteRangeResponse) -> String {
    Object::new()
        .raw("header", &json_header(header))
        .number("deleted", d.deleted)
        .list("prev_kvs", d.prev_kvs.iter().map(json_kv).collect())
        .done()
}

fn json_txn(header: &ResponseHeader, t: &TxnResponse) -> String {
    let responses = t
        .responses
        .iter()
        .map(|op| {
            let (name, inner) = match op {
                ResponseOp::Range(r) => {
                    ("ResponseRange", json_range(&revision_header(r.header_revision), r))
                }
                ResponseOp::Put(p) => {
                    ("ResponsePut", json_put(&revision_header(p.header_revision), p))
                }
                ResponseOp::DeleteRange(d) => {
                    ("ResponseDeleteRange", json_delete(&revision_header(d.header_revision), d))
                }
                ResponseOp::Txn(t) => {
                    ("ResponseTxn", json_txn(&revision_header(t.header_revision), t))
                }
            };
            let oneof = Object::new().raw(name, &inner).done();
            Object::new().raw("Response", &oneof).done()
        })
        .collect();
    Object::new()
        .raw("header", &json_header(header))
        .flag("succeeded", t.succeeded)
        .list("responses", responses)
        .done()
}

fn json_body(header: &ResponseHeader, body: &ResponseBody) -> String {
    match body {
        ResponseBody::Range(r) => json_range(header, r),
        ResponseBody::Put(p) => json_put(header, p),
        ResponseBody::DeleteRange(d) => json_delete(header, d),
        ResponseBody::Txn(t) => json_txn(header, t),
        ResponseBody::Compact => Object::new().raw("header", &json_header(header)).done(),
        ResponseBody::Status(s) => json_status(header, s),
        ResponseBody::Snapshot(_) => Object::new().raw("header", &json_header(header)).done(),
        ResponseBody::Watch(w) => json_watch(header, w),
        // etcdctl marshals clientv3's lease structs: the header's fields
        // inline, then the lease fields, zero or not.
        ResponseBody::LeaseGrant(g) => header_fields(header)
            .raw("ID", &g.id.to_string())
            .raw("TTL", &g.ttl.to_string())
            .raw("Error", "\"\"")
            .done(),
        ResponseBody::LeaseKeepAlive(k) => {
            header_fields(header).raw("ID", &k.id.to_string()).raw("TTL", &k.ttl.to_string()).done()
        }
        ResponseBody::LeaseTimeToLive(t) => {
            let keys: Vec<String> = t
                .keys
                .iter()
                .map(|key| {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(key);
                    serde_json::to_string(&encoded).unwrap()
                })
                .collect();
            let keys =
                if keys.is_empty() { "null".to_string() } else { format!("[{}]", keys.join(",")) };
            header_fields(header)
                .raw("id", &t.id.to_string())
                .raw("ttl", &t.ttl.to_string())
                .raw("granted-ttl", &t.granted_ttl.to_string())
                .raw("keys", &keys)
                .done()
        }
        ResponseBody::LeaseLeases(ids) => {
            let items: Vec<String> = ids.iter().map(|id| format!("{{\"id\":{id}}}")).collect();
            header_fields(header).raw("leases", &format!("[{}]", items.join(","))).done()
        }
        ResponseBody::LeaseRevoke | ResponseBody::LeaseCheckpoint => {
            Object::new().raw("header", &json_header(header)).done()
        }
    }
}

/// An object that starts with the header's fields (Go's embedded struct).
fn header_fields(h: &ResponseHeader) -> Object {
    let mut object = Object::new();
    object
        .number("cluster_id", h.cluster_id)
        .number("member_id", h.member_id)
        .number("revision", h.revision)
        .number("raft_term", h.raft_term);
    object
}

fn json_status(header: &ResponseHeader, s: &StatusResponse) -> String {
    Object::new()
        .raw("header", &json_header(header))
        .string("version", &s.version)
        .number("dbSize", s.db_size)
        .number("leader", s.leader)
        .number("raftIndex", s.raft_index)
        .number("raftTerm", s.raft_term)
        .number("raftAppliedIndex", s.raft_applied_index)
        .number("dbSizeInUse", s.db_size_in_use)
        .flag("isLearner", s.is_learner)
        .done()
}

/// go-humanize's Bytes (SI units), as etcdctl prints sizes.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 10 {
        return format!("{bytes} B");
    }
    let exponent = ((bytes as f64).ln() / 1000f64.ln()).floor() as i32;
    let value = ((bytes as f64) / 1000f64.powi(exponent) * 10.0 + 0.5).floor() / 10.0;
    let unit = UNITS[exponent as usize];
    if value < 10.0 {
        format!("{value:.1} {unit}")
    } else {
        // Go's %.0f rounds half to even.
        format!("{:.0} {unit}", round_half_even(value))
    }
}

fn round_half_even(value: f64) -> f64 {
    let rounded = value.round();
    if (value - value.trunc()).abs() == 0.5 && rounded % 2.0 != 0.0 {
        rounded - value.signum()
    } else {
        rounded
    }
}

pub fn endpoint_status(
    format: OutputFormat,
    rows: &[(String, ResponseHeader, StatusResponse)],
) -> Vec<u8> {
    match format {
        OutputFormat::Json => {
            let items: Vec<String> = rows
                .iter()
                .map(|(endpoint, header, status)| {
                    Object::new()
                        .raw("Endpoint", &serde_json::to_string(endpoint).unwrap())
                        .raw("Status", &json_status(header, status))
                        .done()
                })
                .collect();
            format!("[{}]\n", items.join(",")).into_bytes()
        }
        OutputFormat::Simple => rows
            .iter()
            .map(|(endpoint, header, s)| {
                let cells = status_cells(endpoint, header, s);
                format!("{}\n", cells.join(", "))
            })
            .collect::<String>()
            .into_bytes(),
        OutputFormat::Table => status_table(rows).into_bytes(),
    }
}

fn status_cells(endpoint: &str, header: &ResponseHeader, s: &StatusResponse) -> Vec<String> {
    vec![
        endpoint.to_string(),
        format!("{:x}", header.member_id),
        s.version.clone(),
        human_bytes(s.db_size as u64),
        (s.leader == header.member_id).to_string(),
        s.is_learner.to_string(),
        s.raft_term.to_string(),
        s.raft_index.to_string(),
        s.raft_applied_index.to_string(),
        String::new(),
    ]
}

fn status_table(rows: &[(String, ResponseHeader, StatusResponse)]) -> String {
    let headers = [
        "ENDPOINT",
        "ID",
        "VERSION",
        "DB SIZE",
        "IS LEADER",
        "IS LEARNER",
        "RAFT TERM",
        "RAFT INDEX",
        "RAFT APPLIED INDEX",
        "ERRORS",
    ];
    let cells: Vec<Vec<String>> = rows.iter().map(|(e, h, s)| status_cells(e, h, s)).collect();
    table(&headers, &cells)
}

/// The table etcdctl draws (tablewriter): centred headers, right-aligned cells.
pub fn table(headers: &[&str], cells: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| cells.iter().map(|row| row[i].len()).chain([headers[i].len()]).max().unwrap())
        .collect();
    let rule: String =
        widths.iter().map(|w| format!("+{}", "-".repeat(w + 2))).collect::<String>() + "+\n";
    let mut out = rule.clone();
    for (i, header) in headers.iter().enumerate() {
        let pad = widths[i] - header.len();
        let (left, right) = (pad / 2 + pad % 2, pad / 2);
        out.push_str(&format!("| {}{}{} ", " ".repeat(left), header, " ".repeat(right)));
    }
    out.push_str("|\n");
    out.push_str(&rule);
    for row in cells {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(&format!("| {:>width$} ", cell, width = widths[i]));
        }
        out.push_str("|\n");
    }
    out.push_str(&rule);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_as_go_humanize_does() {
        assert_eq!(human_bytes(5), "5 B");
        assert_eq!(human_bytes(20480), "20 kB");
        assert_eq!(human_bytes(16384), "16 kB");
        assert_eq!(human_bytes(67108864), "67 MB");
        assert_eq!(human_bytes(4194304), "4.2 MB");
    }
}
