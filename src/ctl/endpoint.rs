//! `corekvctl endpoint health|status`: each endpoint of `--endpoints` on
//! its own, as etcdctl checks them.

use std::io::Write;
use std::time::{Duration, Instant};

use super::args::{Cli, OutputFormat};
use super::print::{self, table};
use super::{connect, exit_error, Failure};
use crate::types::{RangeRequest, Request};

/// `cli` with only `endpoint` in its endpoints.
fn single(cli: &Cli, endpoint: &str) -> Cli {
    let mut single = cli.clone();
    single.endpoints = vec![endpoint.to_string()];
    single
}

/// Why `endpoint` failed, in Go's words where there are some: "connection
/// refused" rather than Rust's "Connection refused (os error 111)".
fn reason(endpoint: &str, failure: Failure) -> String {
    let text = failure.message;
    let text = text.strip_prefix("cannot reach any endpoint (").unwrap_or(&text);
    let text = text.strip_prefix(&format!("{endpoint}: ")).unwrap_or(text);
    let text = match text.find(" (os error ") {
        Some(at) => &text[..at],
        None => text.strip_suffix(')').unwrap_or(text),
    };
    let mut chars = text.chars();
    chars.next().map(|c| c.to_lowercase().chain(chars).collect()).unwrap_or_default()
}

/// etcdctl's endpoint status: a row for each endpoint that answers; for
/// one that does not, "Failed to get the status of endpoint EP (WHY)" on
/// stderr, the other rows still printed, and exit 1 (no "Error:" line).
pub fn status(cli: &Cli, out: &mut dyn Write) -> Result<(), Failure> {
    let (mut rows, mut failed) = (Vec::new(), false);
    for endpoint in cli.endpoint_list() {
        let answer = connect(&single(cli, &endpoint))
            .and_then(|mut client| client.status().map_err(Failure::from));
        match answer {
            Ok((header, status)) => rows.push((endpoint, header, status)),
            Err(failure) => {
                let why = reason(&endpoint, failure);
                eprintln!("Failed to get the status of endpoint {endpoint} ({why})");
                failed = true;
            }
        }
    }
    out.write_all(&print::endpoint_status(cli.write_out, &rows))
        .and_then(|_| out.flush())
        .map_err(|e| Failure { code: exit_error, message: e.to_string() })?;
    match failed {
        true => Err(Failure { code: exit_error, message: String::new() }),
        false => Ok(()),
    }
}

struct Health {
    endpoint: String,
    took: Duration,
    error: Option<String>,
}

/// etcdctl's check: a linearizable Get of "health" answered in time means
/// healthy. Every endpoint is checked at once; the report keeps their order.
pub fn health(cli: &Cli, out: &mut dyn Write) -> Result<(), Failure> {
    let endpoints = cli.endpoint_list();
    let checks: Vec<Health> = std::thread::scope(|scope| {
        let checks: Vec<_> = endpoints
            .iter()
            .map(|endpoint| scope.spawn(move || check_health(cli, endpoint)))
            .collect();
        checks.into_iter().map(|check| check.join().expect("health check")).collect()
    });
    let text = match cli.write_out {
        OutputFormat::Simple => {
            // etcdctl writes these lines to stderr.
            for h in &checks {
                match &h.error {
                    None => eprintln!(
                        "{} is healthy: successfully committed proposal: took = {}",
                        h.endpoint,
                        go_duration_string(h.took)
                    ),
                    Some(e) => {
                        eprintln!("{} is unhealthy: failed to commit proposal: {e}", h.endpoint)
                    }
                }
            }
            String::new()
        }
        OutputFormat::Json => {
            let items: Vec<String> = checks
                .iter()
                .map(|h| {
                    let quoted = |text: &str| serde_json::to_string(text).unwrap_or_default();
                    let error = match &h.error {
                        Some(e) => format!(",\"error\":{}", quoted(e)),
                        None => String::new(),
                    };
                    format!(
                        "{{\"endpoint\":{},\"health\":{},\"took\":{}{error}}}",
                        quoted(&h.endpoint),
                        h.error.is_none(),
                        quoted(&go_duration_string(h.took))
                    )
                })
                .collect();
            format!("[{}]\n", items.join(","))
        }
        OutputFormat::Table => {
            let cells: Vec<Vec<String>> = checks
                .iter()
                .map(|h| {
                    vec![
                        h.endpoint.clone(),
                        h.error.is_none().to_string(),
                        go_duration_string(h.took),
                        h.error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            table(&["ENDPOINT", "HEALTH", "TOOK", "ERROR"], &cells)
        }
    };
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| Failure { code: exit_error, message: e.to_string() })?;
    if checks.iter().any(|h| h.error.is_some()) {
        return Err(Failure { code: exit_error, message: "unhealthy cluster".into() });
    }
    Ok(())
}

fn check_health(cli: &Cli, endpoint: &str) -> Health {
    let start = Instant::now();
    let result = connect(&single(cli, endpoint)).and_then(|mut client| {
        let request = Request::Range(RangeRequest {
            key: bytes::Bytes::from_static(b"health"),
            ..Default::default()
        });
        client.call(&request).map_err(Failure::from)
    });
    Health {
        endpoint: endpoint.to_string(),
        took: start.elapsed(),
        error: result.err().map(|failure| reason(endpoint, failure)),
    }
}

/// Go's time.Duration.String: "1.234ms", "5.000471158s", "1m30s".
pub fn go_duration_string(d: Duration) -> String {
    let nanos = d.as_nanos();
    let fraction = |value: u128, digits: u32| {
        let unit = 10u128.pow(digits);
        let (whole, part) = (value / unit, value % unit);
        if part == 0 {
            return whole.to_string();
        }
        let part = format!("{part:0width$}", width = digits as usize);
        format!("{whole}.{}", part.trim_end_matches('0'))
    };
    match nanos {
        0 => "0s".into(),
        1..=999 => format!("{nanos}ns"),
        1_000..=999_999 => format!("{}µs", fraction(nanos, 3)),
        1_000_000..=999_999_999 => format!("{}ms", fraction(nanos, 6)),
        _ => {
            let (hours, rest) = (nanos / 3_600_000_000_000, nanos % 3_600_000_000_000);
            let (minutes, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
            let seconds = format!("{}s", fraction(rest, 9));
            match (hours, minutes) {
                (0, 0) => seconds,
                (0, m) => format!("{m}m{seconds}"),
                (h, m) => format!("{h}h{m}m{seconds}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_prints_them() {
        let s = |nanos: u64| go_duration_string(Duration::from_nanos(nanos));
        assert_eq!(s(0), "0s");
        assert_eq!(s(800), "800ns");
        assert_eq!(s(1_500), "1.5µs");
        assert_eq!(s(1_672_590), "1.67259ms");
        assert_eq!(s(5_000_471_158), "5.000471158s");
        assert_eq!(s(2_000_000_000), "2s");
        assert_eq!(s(90_000_000_000), "1m30s");
        assert_eq!(s(120_000_000_000), "2m0s");
        assert_eq!(s(3_600_000_000_000), "1h0m0s");
    }

    #[test]
    fn failures_read_as_go_words() {
        let failure = |message: &str| Failure { code: 1, message: message.into() };
        let refused = "cannot reach any endpoint (127.0.0.1:1: Connection refused (os error 111))";
        assert_eq!(reason("127.0.0.1:1", failure(refused)), "connection refused");
        let late = "cannot reach any endpoint (127.0.0.1:1: context deadline exceeded)";
        assert_eq!(reason("127.0.0.1:1", failure(late)), "context deadline exceeded");
        assert_eq!(reason("e", failure("context deadline exceeded")), "context deadline exceeded");
    }
}
