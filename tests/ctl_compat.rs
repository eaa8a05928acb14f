//! corekvctl against etcdctl: the same commands against a fresh etcd 3.4 and a
//! fresh corekv print the same bytes (cluster and member ids aside) and exit
//! with the same codes. Needs etcd and etcdctl (.ci/run installs them).

mod common;

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, require_program, temp_dir, Member};

struct Etcd(Child);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_etcd(dir: &std::path::Path) -> (Etcd, String) {
    let (client, peer) = (free_port(), free_port());
    let endpoint = format!("127.0.0.1:{client}");
    let child = Command::new(require_program("etcd"))
        .arg("--data-dir")
        .arg(dir)
        .arg("--listen-client-urls")
        .arg(format!("http://{endpoint}"))
        .arg("--advertise-client-urls")
        .arg(format!("http://{endpoint}"))
        .arg("--listen-peer-urls")
        .arg(format!("http://127.0.0.1:{peer}"))
        .arg("--initial-advertise-peer-urls")
        .arg(format!("http://127.0.0.1:{peer}"))
        .arg("--initial-cluster")
        .arg(format!("default=http://127.0.0.1:{peer}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcd");
    let etcd = Etcd(child);
    let start = Instant::now();
    loop {
        let mut health = etcdctl(&endpoint);
        health.args(["endpoint", "health"]);
        if output(health, None).status.success() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "etcd did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (etcd, endpoint)
}

fn etcdctl(endpoint: &str) -> Command {
    let mut command = Command::new(require_program("etcdctl"));
    command.env("ETCDCTL_API", "3").arg("--endpoints").arg(endpoint);
    command
}

fn corekvctl(endpoint: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_corekvctl"));
    command.arg("--endpoints").arg(endpoint);
    command
}

/// Strips what legitimately differs: ids, raft term, and etcd's log lines.
fn normalize(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let mut out = String::new();
    for line in text.lines().filter(|l| !l.starts_with("{\"level\"")) {
        let mut line = line.to_string();
        for field in ["\"cluster_id\":", "\"member_id\":", "\"raft_term\":"] {
            while let Some(at) = line.find(field) {
                let end = line[at + field.len()..]
                    .find(|c: char| !c.is_ascii_digit())
                    .map_or(line.len(), |e| at + field.len() + e);
                line.replace_range(at..end, "");
            }
        }
        out.push_str(&line.replace(",,", ",").replace("{,", "{"));
        out.push('\n');
    }
    out
}

const CASES: &[(&[&str], Option<&str>)] = &[
    (&["put", "foo", "bar"], None),
    (&["put", "foo", "bar2", "--prev-kv"], None),
    (&["get", "foo"], None),
    (&["get", "foo", "-w", "json"], None),
    (&["get", "foo", "--keys-only"], None),
    (&["put", "k1", "v1"], None),
    (&["put", "k2", "v2"], None),
    (&["put", "k3"], Some("value from stdin")),
    // No value and nothing on stdin: refused, nothing written.
    (&["put", "e"], None),
    (&["put", "e", "--ignore-lease"], None),
    (&["get", "e"], None),
    // --ignore-value takes no value, from the arguments or stdin.
    (&["put", "k3", "--ignore-value"], None),
    (&["put", "k3", "x", "--ignore-value"], None),
    (&["put", "nokey", "--ignore-value"], Some("ignored")),
    (&["get", "k3"], None),
    (&["get", "k", "--prefix", "--limit", "1", "-w", "json"], None),
    (&["get", "k", "--prefix", "--sort-by=VALUE", "--order=DESCEND", "--print-value-only"], None),
    (&["get", "k", "--from-key", "--keys-only", "-w", "json"], None),
    (&["get", "k1", "k3"], None),
    (&["get", "k", "--prefix", "--sort-by=MODIFY", "--order=DESCEND", "-w", "json"], None),
    (&["del", "foo"], None),
    (&["del", "nothing"], None),
    (&["put", "a", "1"], None),
    (&["del", "a", "--prev-kv"], None),
    (&["get", "foo", "--rev", "100"], None),
    (&["get", "foo", "--rev", "3", "-w", "json"], None),
    (&["compaction", "3"], None),
    (&["compaction", "3"], None),
    (&["get", "k1", "--rev", "2"], None),
    (&["put", "", "v"], None),
    (&["put", "-w", "json", "k4", "v4"], None),
    (&["txn"], Some("mod(\"k1\") > \"0\"\nvalue(\"k2\") = \"v2\"\n\nput k5 v5\nget k1 --prefix\ndel k2\n\nput x y\n\n")),
    (&["txn", "-w", "json"], Some("version(\"k1\") = \"9\"\n\nput k6 v6\n\nget k1\nput \"a b\" \"c d\"\n\n")),
    (&["txn"], Some("val(\"k1\") = \"v1\"\nc(\"k3\") > \"1\"\n\ndel k --prefix --prev-kv\n\n\n")),
    (&["txn", "-w", "json"], Some("\n\nget --from-key a\nput zz top\n\n\n")),
    (&["txn"], Some("garbage\n\n\n\n")),
    // Each section ends at a blank line; input that ends first is refused.
    (&["txn"], Some("")),
    (&["txn"], Some("\n\n")),
    (&["txn"], Some("\nput t x\n")),
    (&["txn"], Some("\nput t x\n\n")),
    (&["txn"], Some("\nput t x\n\n\n")),
    (&["txn", "-i"], None),
    (&["txn"], Some(" \t\nput ws x\n \t \n\t\n")),
    (&["get", "", "--prefix", "--keys-only"], None),
    // Double-quoted words are Go strings.
    (&["txn", "-w", "json"], Some("\nput \"esc\\x41\\101\\u00e9\\a\\b\\f\\v\\\\\\\"\" v\n\n\n")),
    (&["get", "esc", "--prefix", "-w", "json"], None),
    (&["txn"], Some("\nput \"k\\q\" v\n\n\n")),
    (&["txn"], Some("\nput \"k\\'\" v\n\n\n")),
    (&["txn"], Some("mod(\"k\\q\") > \"0\"\n\n\n\n")),
    (&["txn"], Some("mod(\"k1\")> \"0\"\n\n\n\n")),
    (&["txn"], Some("mod(\"k1\") > 0\n\n\n\n")),
    (&["txn"], Some("value(\"k1\") = \"v1\" extra\n\nget k1\n\n\n")),
    (&["txn"], Some("\nfoo x\n\n\n")),
    (&["txn"], Some("\nbad\n\n\n")),
    (&["del", "k", "--prefix", "--prev-kv", "-w", "json"], None),
    (&["get", "", "--prefix", "-w", "json"], None),
    (&["get", "", "--from-key"], None),
    // Refused before anything is sent: etcdctl's words and exit codes.
    (&["get", "k1", "-w", "table"], None),
    (&["put", "k1", "v", "-w", "table"], None),
    (&["del", "k1", "-w", "table"], None),
    (&["lease", "grant", "10", "-w", "table"], None),
    (&["get", "k1", "-w", "bogus"], None),
    (&["-w", "bogus", "get", "k1"], None),
    (&["get", "k1", "--sort-by", "bogus"], None),
    (&["get", "k1", "--order", "Bogus"], None),
    (&["get", "k1", "--consistency", "x"], None),
    (&["compaction", "abc"], None),
    (&["compaction", "99999999999999999999"], None),
    (&["get", "k1", "--print-value-only", "-w", "json"], None),
    // pflag's syntax: bool=value, the last of a repeated flag, negative
    // numbers, Go durations, --endpoints adding up.
    (&["get", "k", "--prefix=true"], None),
    (&["get", "k", "--prefix=false"], None),
    (&["get", "k", "--prefix=1", "--keys-only=true", "--keys-only=false"], None),
    (&["get", "k", "--prefix", "--keys-only=T"], None),
    (&["get", "k", "--prefix", "true"], None),
    (&["get", "k", "--prefix", "--limit", "1", "--limit", "2"], None),
    (&["get", "k", "--prefix", "--limit", "-1"], None),
    (&["get", "k", "--prefix", "--limit=-1", "--rev=-1"], None),
    (&["-w", "json", "-w", "simple", "get", "k1"], None),
    (&["--command-timeout", "1h2m", "get", "k1"], None),
    (&["--command-timeout=1m30s", "--dial-timeout", "1.5s", "get", "k1"], None),
    (&["--endpoints", "127.0.0.1:1", "get", "k1"], None),
];

#[test]
fn corekvctl_prints_what_etcdctl_prints() {
    let etcd_dir = temp_dir("etcd-reference");
    let (_etcd, etcd_endpoint) = start_etcd(&etcd_dir);
    let member = Member::start(&temp_dir("ctl-compat"));
    for (args, stdin) in CASES {
        let mut reference = etcdctl(&etcd_endpoint);
        reference.args(*args);
        let mut ours = corekvctl(&member.endpoint);
        ours.args(*args);
        let (want, got) = (output(reference, *stdin), output(ours, *stdin));
        assert_eq!(normalize(&got.stdout), normalize(&want.stdout), "stdout of {args:?}");
        assert_eq!(normalize(&got.stderr), normalize(&want.stderr), "stderr of {args:?}");
        assert_eq!(got.status.code(), want.status.code(), "exit code of {args:?}");
    }
    drop(member);
    let _ = std::fs::remove_dir_all(&etcd_dir);
}

fn output(command: Command, stdin: Option<&str>) -> Output {
    output_bytes(command, stdin.map(str::as_bytes))
}

fn output_bytes(mut command: Command, stdin: Option<&[u8]>) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.unwrap_or_default()).unwrap();
    child.wait_with_output().unwrap()
}

/// Keys and values that are not UTF-8, as arguments and in txn input.
#[test]
fn corekvctl_takes_bytes_as_etcdctl_does() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let etcd_dir = temp_dir("etcd-bytes-reference");
    let (_etcd, etcd_endpoint) = start_etcd(&etcd_dir);
    let member = Member::start(&temp_dir("ctl-bytes"));
    type Case<'a> = (&'a [&'a [u8]], Option<&'a [u8]>);
    let cases: &[Case] = &[
        (&[b"put", b"k\xff", b"v\xfe\x80"], None),
        (&[b"put", b"k\xc3"], Some(b"from stdin \xff")),
        (&[b"get", b"k\xc3"], None),
        (&[b"get", b"k\xff", b"-w", b"json"], None),
        (&[b"get", b"k\xc3", b"k\xff\xff", b"-w", b"json"], None),
        (&[b"txn", b"-w", b"json"], Some(b"\nput t\xff\xfe x\xff\nput \"q\xff\" \"\\xff\"\n\n\n")),
        (
            &[b"txn", b"-w", b"json"],
            Some(b"value(\"k\xff\") = \"v\\xfe\\x80\"\n\nget t\xff\xfe\n\n\n"),
        ),
        (&[b"get", b"", b"--prefix", b"-w", b"json"], None),
        (&[b"del", b"t\xff", b"t\xff\xff", b"--prev-kv", b"-w", b"json"], None),
        (&[b"del", b"k\xff", b"--prefix"], None),
    ];
    for (args, stdin) in cases {
        let args: Vec<&OsStr> = args.iter().map(|arg| OsStr::from_bytes(arg)).collect();
        let mut reference = etcdctl(&etcd_endpoint);
        reference.args(&args);
        let mut ours = corekvctl(&member.endpoint);
        ours.args(&args);
        let (want, got) = (output_bytes(reference, *stdin), output_bytes(ours, *stdin));
        assert_eq!(normalize(&got.stdout), normalize(&want.stdout), "stdout of {args:?}");
        assert_eq!(normalize(&got.stderr), normalize(&want.stderr), "stderr of {args:?}");
        assert_eq!(got.status.code(), want.status.code(), "exit code of {args:?}");
    }
    drop(member);
    let _ = std::fs::remove_dir_all(&etcd_dir);
}

#[test]
fn endpoint_status_has_etcdctls_shape() {
    let member = Member::start(&temp_dir("ctl-status"));
    let status = output(
        {
            let mut c = corekvctl(&member.endpoint);
            c.args(["endpoint", "status"]);
            c
        },
        None,
    );
    assert!(status.status.success());
    let line = String::from_utf8(status.stdout).unwrap();
    let cells: Vec<&str> = line.trim_end().split(", ").collect();
    assert_eq!(cells.len(), 9, "{line:?}");
    assert_eq!(cells[0], member.endpoint);
    assert_eq!(cells[4], "true", "a single member is the leader");
    assert!(line.ends_with(", \n"), "an empty errors column, as etcdctl: {line:?}");
    let table = output(
        {
            let mut c = corekvctl(&member.endpoint);
            c.args(["endpoint", "status", "-w", "table"]);
            c
        },
        None,
    );
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("| ENDPOINT |") || table.contains("ENDPOINT"), "{table}");
    assert_eq!(table.lines().count(), 5);
}

/// Runs `command` for at most `limit` (a watch runs until killed).
fn output_within(mut command: Command, limit: Duration) -> Output {
    let mut child =
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    while start.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

#[test]
fn corekvctl_watch_prints_what_etcdctl_watch_prints() {
    let etcd_dir = temp_dir("etcd-watch-reference");
    let (_etcd, etcd_endpoint) = start_etcd(&etcd_dir);
    let member = Member::start(&temp_dir("ctl-watch"));
    let endpoints = [etcd_endpoint.as_str(), member.endpoint.as_str()];
    let run = |endpoint: &str, args: &[&str]| {
        let mut command =
            if endpoint == etcd_endpoint { etcdctl(endpoint) } else { corekvctl(endpoint) };
        command.args(args);
        output(command, None)
    };
    // The same history on both (revisions 2 to 6).
    for args in [&["put", "w/a", "1"][..], &["put", "w/b", "2"], &["put", "w/a", "3"]] {
        for endpoint in endpoints {
            assert!(run(endpoint, args).status.success());
        }
    }
    for args in [&["del", "w/b"][..], &["put", "other", "x"]] {
        for endpoint in endpoints {
            assert!(run(endpoint, args).status.success());
        }
    }
    let compare = |args: &[&str], setup: &dyn Fn(&str)| {
        let mut outputs = Vec::new();
        for endpoint in endpoints {
            let mut command =
                if endpoint == etcd_endpoint { etcdctl(endpoint) } else { corekvctl(endpoint) };
            command.args(args);
            let child = std::thread::scope(|scope| {
                let watching = scope.spawn(|| output_within(command, Duration::from_millis(1500)));
                std::thread::sleep(Duration::from_millis(500));
                setup(endpoint);
                watching.join().unwrap()
            });
            outputs.push(child);
        }
        let (want, got) = (&outputs[0], &outputs[1]);
        assert_eq!(normalize(&got.stdout), normalize(&want.stdout), "stdout of {args:?}");
        assert_eq!(normalize(&got.stderr), normalize(&want.stderr), "stderr of {args:?}");
        assert_eq!(got.status.code(), want.status.code(), "exit code of {args:?}");
    };
    let nothing = |_: &str| {};
    compare(&["watch", "--prefix", "w/", "--rev", "1", "--prev-kv"], &nothing);
    compare(&["watch", "--prefix", "w/", "--rev", "1", "-w", "json"], &nothing);
    compare(&["watch", "--rev", "5", "w/a", "w/c"], &nothing);
    compare(&["watch"], &nothing);
    // Live: an event that happens while watching.
    let put = |endpoint: &str| assert!(run(endpoint, &["put", "w/live", "now"]).status.success());
    compare(&["watch", "w/live"], &put);
    let delete = |endpoint: &str| assert!(run(endpoint, &["del", "w/live"]).status.success());
    compare(&["watch", "w/live", "--prev-kv", "-w", "json"], &delete);
    // From a compacted revision: canceled, exit 5.
    for endpoint in endpoints {
        assert!(run(endpoint, &["compaction", "4"]).status.success());
    }
    compare(&["watch", "w/a", "--rev", "2"], &nothing);
    compare(&["watch", "w/a", "--rev", "2", "-w", "json"], &nothing);
    drop(member);
    let _ = std::fs::remove_dir_all(&etcd_dir);
}

/// `normalize`, and lease ids (which each server picks) replaced: 16 hex
/// digits, and the decimal values of "ID", "id" and "lease" fields.
fn normalize_leases(text: &[u8]) -> String {
    let text = normalize(text);
    let mut out = String::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        if let Some(field) =
            ["\"ID\":", "\"id\":", "\"lease\":"].iter().find(|f| rest.starts_with(**f))
        {
            let digits = rest[field.len()..].find(|c: char| !c.is_ascii_digit() && c != '-');
            let digits = digits.unwrap_or(rest.len() - field.len());
            out.push_str(field);
            out.push_str("<ID>");
            rest = &rest[field.len() + digits..];
            continue;
        }
        let hex = rest.chars().take_while(|c| c.is_ascii_hexdigit()).count();
        if hex == 16 {
            out.push_str("<ID>");
            rest = &rest[16..];
            continue;
        }
        let skip = hex.max(1);
        let skip = rest.char_indices().nth(skip).map_or(rest.len(), |(i, _)| i);
        out.push_str(&rest[..skip]);
        rest = &rest[skip..];
    }
    out
}

#[test]
fn corekvctl_lease_prints_what_etcdctl_lease_prints() {
    let etcd_dir = temp_dir("etcd-lease-reference");
    let (_etcd, etcd_endpoint) = start_etcd(&etcd_dir);
    let member = Member::start(&temp_dir("ctl-lease"));
    let endpoints = [etcd_endpoint.as_str(), member.endpoint.as_str()];
    let command = |endpoint: &str| {
        if endpoint == etcd_endpoint {
            etcdctl(endpoint)
        } else {
            corekvctl(endpoint)
        }
    };
    let mut outputs: Vec<Vec<Output>> = vec![Vec::new(), Vec::new()];
    let cases: Vec<Vec<String>> = [
        "put --lease=ID lk1 v1",
        // One key only: etcd lists a lease's keys in map order.
        "put lk2 v2",
        "lease timetolive ID",
        "lease timetolive ID --keys",
        "-w json lease timetolive ID --keys",
        "lease keep-alive --once ID",
        "-w json lease keep-alive --once ID",
        "lease list",
        "-w json lease list",
        "-w json get lk1",
        "lease revoke ID",
        "get lk --prefix",
        "-w json lease revoke ID",
        "lease revoke ID",
        "lease timetolive ID",
        "-w json lease timetolive ID",
        "lease keep-alive --once ID",
        "lease keep-alive ID",
        "-w json lease keep-alive ID",
        "lease grant 1",
        "-w json lease grant 50",
        "lease grant 9000000001",
        "lease grant abc",
        "lease grant",
        "lease revoke zz",
        "lease revoke",
        "lease timetolive",
        "lease keep-alive",
        "put --lease=1234 x y",
        "put --lease=zz x y",
    ]
    .iter()
    .map(|case| case.split(' ').map(str::to_string).collect())
    .collect();
    for (side, endpoint) in endpoints.iter().enumerate() {
        // Each server's lease is granted right before its cases run, so
        // both are read as long after their grant (remaining TTLs agree).
        let mut grant = command(endpoint);
        grant.args(["lease", "grant", "1000"]);
        let granted = output(grant, None);
        let text = String::from_utf8(granted.stdout.clone()).unwrap();
        let id = text.split_whitespace().nth(1).expect("lease ID").to_string();
        outputs[side].push(granted);
        for case in &cases {
            let mut run = command(endpoint);
            run.args(case.iter().map(|arg| arg.replace("ID", &id)));
            outputs[side].push(output(run, None));
        }
    }
    let labels = std::iter::once(vec!["lease grant 1000".to_string()]).chain(cases);
    for ((want, got), label) in outputs[0].iter().zip(&outputs[1]).zip(labels) {
        assert_eq!(
            normalize_leases(&got.stdout),
            normalize_leases(&want.stdout),
            "stdout of {label:?}"
        );
        assert_eq!(
            normalize_leases(&got.stderr),
            normalize_leases(&want.stderr),
            "stderr of {label:?}"
        );
        assert_eq!(got.status.code(), want.status.code(), "exit code of {label:?}");
    }
    drop(member);
    let _ = std::fs::remove_dir_all(&etcd_dir);
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// snapshot save leaves no FILE.part behind when it fails; the saved file is
/// private (0600) and a restored data dir too (0700), as etcdctl makes them.
#[test]
fn snapshot_files_are_cleaned_up_and_private_as_etcdctls() {
    let etcd_dir = temp_dir("etcd-snapshot-reference");
    let (_etcd, etcd_endpoint) = start_etcd(&etcd_dir);
    let member = Member::start(&temp_dir("ctl-snapshot"));
    let dir = temp_dir("ctl-snapshot-files");
    let path = |name: &str| dir.join(name);
    let save = |mut tool: Command, name: &str| {
        tool.args(["snapshot", "save"]).arg(path(name));
        output(tool, None)
    };
    // Nobody listens: the connection fails after FILE.part was created.
    let mut refused = corekvctl(&format!("127.0.0.1:{}", free_port()));
    refused.args(["--dial-timeout", "1s"]);
    assert!(!save(refused, "gone.db").status.success());
    assert!(!path("gone.db.part").exists() && !path("gone.db").exists());
    // FILE is a directory: the snapshot is received and checked, the rename fails.
    std::fs::create_dir_all(path("taken.db").join("inside")).unwrap();
    assert!(!save(corekvctl(&member.endpoint), "taken.db").status.success());
    assert!(!path("taken.db.part").exists());
    // Saved and restored by each tool: the same modes.
    let restore = |mut tool: Command, name: &str| {
        tool.args(["snapshot", "restore"]).arg(path(&format!("{name}.db")));
        tool.arg("--data-dir").arg(path(&format!("{name}.restored")));
        let restored = output(tool, None);
        assert!(restored.status.success(), "{name}: {restored:?}");
        mode(&path(&format!("{name}.restored")))
    };
    for (tool, name) in [(etcdctl(&etcd_endpoint), "etcd"), (corekvctl(&member.endpoint), "ours")] {
        let saved = save(tool, &format!("{name}.db"));
        assert!(saved.status.success(), "{name}: {saved:?}");
        assert_eq!(mode(&path(&format!("{name}.db"))), 0o600, "{name}'s saved snapshot");
    }
    assert_eq!(restore(etcdctl(&etcd_endpoint), "etcd"), 0o700);
    assert_eq!(restore(corekvctl(&member.endpoint), "ours"), 0o700);
    drop(member);
    let _ = std::fs::remove_dir_all(&etcd_dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// etcdctl's log prefix ("2026-01-02 03:04:05.123456 C | pkg/flags: ") and
/// corekvctl's ("Error: ", "Warning: ") on the environment's messages.
fn normalize_env(text: &[u8]) -> String {
    let text = normalize(text);
    let mut out = String::new();
    for line in text.lines() {
        let line = match line.find(" | pkg/flags: ") {
            Some(at) => &line[at + " | pkg/flags: ".len()..],
            None => line,
        };
        let line = line.strip_prefix("Warning: ").unwrap_or(line);
        let line = match line.strip_prefix("Error: conflicting") {
            Some(rest) => format!("conflicting{rest}"),
            None => line.to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// A command with the environment `env` ("EP" is the endpoint) and no
/// ETCDCTL_ variable from the test's own environment.
fn with_env(mut command: Command, endpoint: &str, env: &[(&str, &str)]) -> Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ETCDCTL_") {
            command.env_remove(name);
        }
    }
    for (name, value) in env {
        command.env(name, value.replace("EP", endpoint));
    }
    command
}

/// The global flags are read from ETCDCTL_<FLAG> as etcdctl reads them.
#[test]
fn corekvctl_reads_global_flags_from_the_environment_as_etcdctl() {
    let etcd_dir = temp_dir("etcd-env-reference");
    let (_etcd, etcd_endpoint) = start_etcd(&etcd_dir);
    let member = Member::start(&temp_dir("ctl-env"));
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: &[Case] = &[
        (&[("ETCDCTL_ENDPOINTS", "EP")], &["put", "k", "v"]),
        (&[("ETCDCTL_ENDPOINTS", "EP")], &["get", "k"]),
        (&[("ETCDCTL_ENDPOINTS", "EP"), ("ETCDCTL_WRITE_OUT", "json")], &["get", "k"]),
        (&[("ETCDCTL_ENDPOINTS", "EP"), ("ETCDCTL_WRITE_OUT", "json")], &["put", "k", "v2"]),
        // Unknown: warned about; empty: unset; a timeout that does not parse: ignored.
        (&[("ETCDCTL_ENDPOINTS", "EP"), ("ETCDCTL_BOGUS", "1")], &["get", "k"]),
        (&[("ETCDCTL_ENDPOINTS", "EP"), ("ETCDCTL_WRITE_OUT", "")], &["get", "k"]),
        (&[("ETCDCTL_ENDPOINTS", "EP"), ("ETCDCTL_DIAL_TIMEOUT", "abc")], &["get", "k"]),
        (&[("ETCDCTL_ENDPOINTS", "EP"), ("ETCDCTL_DIAL_TIMEOUT", "3s")], &["get", "k"]),
        // etcdctl's own variables that corekvctl has no use for: silent.
        (&[("ETCDCTL_ENDPOINTS", "EP"), ("ETCDCTL_INSECURE_TRANSPORT", "true")], &["get", "k"]),
        (&[("ETCDCTL_ENDPOINTS", "EP"), ("ETCDCTL_WRITE_OUT", "bogus")], &["get", "k"]),
        // The same flag in both places is refused.
        (&[("ETCDCTL_ENDPOINTS", "127.0.0.1:1")], &["--endpoints", "EP", "get", "k"]),
        (
            &[("ETCDCTL_ENDPOINTS", "EP"), ("ETCDCTL_WRITE_OUT", "json")],
            &["get", "k", "-w", "simple"],
        ),
        (
            &[("ETCDCTL_ENDPOINTS", "EP"), ("ETCDCTL_DIAL_TIMEOUT", "1s")],
            &["--dial-timeout=2s", "get", "k"],
        ),
    ];
    for (env, args) in cases {
        let args: Vec<String> = args.iter().map(|a| a.replace("EP", &etcd_endpoint)).collect();
        let mut reference = with_env(Command::new(require_program("etcdctl")), &etcd_endpoint, env);
        reference.env("ETCDCTL_API", "3").args(&args);
        let args: Vec<String> =
            args.iter().map(|a| a.replace(&etcd_endpoint, &member.endpoint)).collect();
        let mut ours =
            with_env(Command::new(env!("CARGO_BIN_EXE_corekvctl")), &member.endpoint, env);
        ours.args(&args);
        let (want, got) = (output(reference, None), output(ours, None));
        let label = format!("{env:?} {args:?}");
        assert_eq!(normalize(&got.stdout), normalize(&want.stdout), "stdout of {label}");
        assert_eq!(normalize_env(&got.stderr), normalize_env(&want.stderr), "stderr of {label}");
        assert_eq!(got.status.code(), want.status.code(), "exit code of {label}");
    }
    // The timeouts apply: a server that never answers is given up on at the
    // dial timeout from the environment (the default is 2 s).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_endpoint = silent.local_addr().unwrap().to_string();
    let env = [("ETCDCTL_ENDPOINTS", "EP"), ("ETCDCTL_DIAL_TIMEOUT", "300ms")];
    let mut ours = with_env(Command::new(env!("CARGO_BIN_EXE_corekvctl")), &silent_endpoint, &env);
    ours.args(["get", "k"]);
    let start = Instant::now();
    let got = output(ours, None);
    assert_eq!(got.status.code(), Some(1), "{got:?}");
    assert!(start.elapsed() < Duration::from_millis(1500), "took {:?}", start.elapsed());
    drop(member);
    let _ = std::fs::remove_dir_all(&etcd_dir);
}

/// What differs between two health checks: how long they took, and why an
/// endpoint nobody listens on failed (etcdctl waits out the command timeout
/// and says "context deadline exceeded"; corekvctl is refused at once and
/// says "connection refused"). Tables lose their padding, which follows the
/// lengths of those.
/// etcdctl (on `etcd`) and corekvctl (on `ours`) run with `args`, in
/// which EP names the tool's endpoint and DOWN `down`: (etcdctl's output,
/// corekvctl's).
fn side_by_side(args: &[&str], etcd: &str, ours: &str, down: &str) -> (Output, Output) {
    let with = |endpoint: &str| -> Vec<String> {
        args.iter().map(|a| a.replace("EP", endpoint).replace("DOWN", down)).collect()
    };
    let mut reference = Command::new(require_program("etcdctl"));
    reference.env("ETCDCTL_API", "3").args(with(etcd));
    let mut corekvctl = Command::new(env!("CARGO_BIN_EXE_corekvctl"));
    corekvctl.args(with(ours));
    (output(reference, None), output(corekvctl, None))
}

fn normalize_health(text: &[u8]) -> String {
    let text = normalize(text).replace("connection refused", "context deadline exceeded");
    let is_duration = |token: &str| {
        let mut rest = token;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(0);
            let unit =
                ["ns", "µs", "ms", "s", "m", "h"].iter().find(|u| rest[digits..].starts_with(**u));
            match unit {
                Some(unit) if digits > 0 => rest = &rest[digits + unit.len()..],
                _ => return false,
            }
        }
        !token.is_empty()
    };
    let mut out = String::new();
    let mut token = String::new();
    for c in text.chars().chain(std::iter::once('\n')) {
        if c.is_ascii_alphanumeric() || c == '.' || c == 'µ' {
            token.push(c);
            continue;
        }
        out.push_str(if is_duration(&token) { "<T>" } else { &token });
        token.clear();
        let repeated = (c == ' ' || c == '-') && out.ends_with(c);
        if !repeated {
            out.push(c);
        }
    }
    out.pop();
    out
}

/// `endpoint health`: its lines (on stderr in the simple format), JSON and
/// table, and an unreachable endpoint ("unhealthy cluster", exit 1).
#[test]
fn endpoint_health_prints_what_etcdctl_prints() {
    let etcd_dir = temp_dir("etcd-health-reference");
    let (_etcd, etcd_endpoint) = start_etcd(&etcd_dir);
    let member = Member::start(&temp_dir("ctl-health"));
    let down = format!("127.0.0.1:{}", free_port());
    let cases: &[&[&str]] = &[
        &["--endpoints", "EP", "endpoint", "health"],
        &["--endpoints", "EP", "endpoint", "health", "-w", "json"],
        &["--endpoints", "EP", "endpoint", "health", "-w", "table"],
        &["--endpoints", "EP,DOWN", "--command-timeout=1s", "endpoint", "health"],
        &["--endpoints", "EP,DOWN", "--command-timeout=1s", "endpoint", "health", "-w", "json"],
        &["--endpoints", "EP,DOWN", "--command-timeout=1s", "endpoint", "health", "-w", "table"],
        &["--endpoints", "DOWN", "--command-timeout=1s", "endpoint", "health"],
    ];
    for args in cases {
        let (want, got) = side_by_side(args, &etcd_endpoint, &member.endpoint, &down);
        let endpoints =
            |text: String| text.replace(&etcd_endpoint, "EP").replace(&member.endpoint, "EP");
        let (got_out, want_out) = (normalize_health(&got.stdout), normalize_health(&want.stdout));
        assert_eq!(endpoints(got_out), endpoints(want_out), "stdout of {args:?}");
        let (got_err, want_err) = (normalize_health(&got.stderr), normalize_health(&want.stderr));
        assert_eq!(endpoints(got_err), endpoints(want_err), "stderr of {args:?}");
        assert_eq!(got.status.code(), want.status.code(), "exit code of {args:?}");
    }
    drop(member);
    let _ = std::fs::remove_dir_all(&etcd_dir);
}

/// `version`: etcdctl's two lines, with corekvctl's own version.
#[test]
fn version_has_etcdctls_shape() {
    let mut reference = Command::new(require_program("etcdctl"));
    reference.env("ETCDCTL_API", "3").arg("version");
    let mut ours = Command::new(env!("CARGO_BIN_EXE_corekvctl"));
    ours.arg("version");
    let (want, got) = (output(reference, None), output(ours, None));
    let shape = |out: &Output, tool: &str| {
        let text = String::from_utf8(out.stdout.clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text:?}");
        let version = lines[0].strip_prefix(&format!("{tool} version: ")).expect(&text);
        assert_eq!(version.split('.').count(), 3, "{text:?}");
        assert!(version.split('.').all(|n| n.parse::<u32>().is_ok()), "{text:?}");
        assert!(text.ends_with('\n') && out.stderr.is_empty(), "{out:?}");
        (lines[1].to_string(), out.status.code())
    };
    assert_eq!(shape(&got, "corekvctl"), shape(&want, "etcdctl"));
    assert!(String::from_utf8_lossy(&got.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// `endpoint status` with an endpoint down: the others' rows on stdout, a
/// line for it on stderr (no "Error:"), exit 1. The rows themselves differ
/// (versions, sizes, indexes): their number and endpoints are compared.
#[test]
fn endpoint_status_with_an_endpoint_down_as_etcdctl() {
    let etcd_dir = temp_dir("etcd-status-reference");
    let (_etcd, etcd_endpoint) = start_etcd(&etcd_dir);
    let member = Member::start(&temp_dir("ctl-status-down"));
    let down = format!("127.0.0.1:{}", free_port());
    let cases: &[&[&str]] = &[
        &["--endpoints", "EP,DOWN", "--command-timeout=1s", "endpoint", "status"],
        &["--endpoints", "DOWN,EP", "--command-timeout=1s", "endpoint", "status", "-w", "json"],
        &["--endpoints", "EP,DOWN", "--command-timeout=1s", "endpoint", "status", "-w", "table"],
        &["--endpoints", "DOWN", "--command-timeout=1s", "endpoint", "status"],
        &["--endpoints", "DOWN", "--command-timeout=1s", "endpoint", "status", "-w", "json"],
    ];
    for args in cases {
        let (want, got) = side_by_side(args, &etcd_endpoint, &member.endpoint, &down);
        let endpoints =
            |text: String| text.replace(&etcd_endpoint, "EP").replace(&member.endpoint, "EP");
        let (got_err, want_err) = (normalize_health(&got.stderr), normalize_health(&want.stderr));
        assert_eq!(endpoints(got_err), endpoints(want_err), "stderr of {args:?}");
        assert_eq!(got.status.code(), want.status.code(), "exit code of {args:?}");
        let rows = |out: &Output| -> Vec<String> {
            let text = endpoints(String::from_utf8_lossy(&out.stdout).into_owned());
            let cells = text.lines().map(|l| {
                l.split([',', '|'])
                    .find(|c| !c.trim().is_empty())
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            });
            let mut rows: Vec<String> = cells.filter(|c| !c.starts_with('+')).collect();
            rows.extend(text.match_indices("\"Endpoint\":\"EP\"").map(|_| "json EP".to_string()));
            rows
        };
        assert_eq!(rows(&got), rows(&want), "rows of {args:?}: {got:?}");
    }
    drop(member);
    let _ = std::fs::remove_dir_all(&etcd_dir);
}

/// Arguments that do not parse: etcdctl (cobra) prints its usage on stdout
/// and the error twice on stderr; corekvctl its help on stdout and the
/// error once. The exit code, the error's words and the command whose
/// usage is printed (if any) are compared.
#[test]
fn corekvctl_refuses_what_etcdctl_refuses() {
    let cases: &[&[&str]] = &[
        &["get", "k", "--bogus"],
        &["get", "k", "--bogus=1"],
        &["bogus"],
        &["get", "k", "--limit", "abc"],
        &["get", "k", "--rev=x"],
        &["compaction", "-1"],
        &["get", "k", "--prefix=yes"],
        &["--command-timeout", "5", "get", "k"],
        &["--dial-timeout=1x", "get", "k"],
        &["--command-timeout", "1s1", "get", "k"],
    ];
    let endpoint = format!("127.0.0.1:{}", free_port());
    for args in cases {
        let mut reference = etcdctl(&endpoint);
        reference.args(*args);
        let mut ours = corekvctl(&endpoint);
        ours.args(*args);
        let (want, got) = (output(reference, None), output(ours, None));
        let last = |out: &Output| {
            let text = String::from_utf8_lossy(&out.stderr).replace("\"etcdctl\"", "\"corekvctl\"");
            text.lines().rev().find(|l| !l.is_empty()).unwrap_or_default().to_string()
        };
        assert_eq!(last(&got), last(&want), "stderr of {args:?}");
        assert_eq!(got.status.code(), want.status.code(), "exit code of {args:?}");
        // "USAGE:\n\tetcdctl get [options] <key>…" / "Usage: corekvctl get [OPTIONS] <KEY>…"
        let usage = |out: &Output, heading: &str| {
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let line = text.split(heading).nth(1).map(|rest| rest.trim_start().to_string());
            line.map(|line| {
                let words = line.split_whitespace().skip(1);
                words.take_while(|w| !w.starts_with(['[', '<'])).collect::<Vec<_>>().join(" ")
            })
        };
        let (want_usage, got_usage) = (usage(&want, "USAGE:"), usage(&got, "Usage:"));
        assert!(want_usage.is_none() || want_usage.as_deref() != Some(""), "{args:?}");
        assert_eq!(got_usage, want_usage, "the usage printed on stdout for {args:?}");
    }
}
