//! etcdctl's flag syntax (Go's pflag and cobra) on top of clap: values
//! parsed as Go parses them, with Go's error words; boolean flags that take
//! `=true`/`=false`; a repeated flag's last value wins; cobra's words and exit
//! codes for arguments it refuses; and the global flags read from
//! `ETCDCTL_<FLAG>` environment variables.

use std::ffi::OsString;
use std::time::Duration;

use clap::builder::ArgAction;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::ArgMatches;

use super::{exit_error, Failure};

/// Go's time.ParseDuration, with its error words. A negative duration is
/// zero here: a deadline already passed.
pub fn go_duration(text: &str) -> Result<Duration, String> {
    let quoted = serde_json::to_string(text).unwrap_or_default();
    let invalid = || format!("time: invalid duration {quoted}");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let number = &rest[..digits];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let nanos = match &rest[..unit_len] {
            "" => return Err(format!("time: missing unit in duration {quoted}")),
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            unit => {
                let unit = serde_json::to_string(unit).unwrap_or_default();
                return Err(format!("time: unknown unit {unit} in duration {quoted}"));
            }
        };
        rest = &rest[unit_len..];
        total += value * nanos;
        if total > i64::MAX as f64 {
            return Err(invalid());
        }
    }
    Ok(if negative { Duration::ZERO } else { Duration::from_nanos(total as u64) })
}

/// Go's strconv.ParseBool, with its error words.
pub fn go_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {}: invalid syntax",
            serde_json::to_string(text).unwrap_or_default()
        )),
    }
}

/// Go's strconv.ParseInt(text, 10, 64), with its error words.
pub fn go_int64(text: &str) -> Result<i64, String> {
    super::lease::go_parse_int(text, 10)
}

/// pflag's rules on a clap command and all its subcommands: a flag given
/// twice takes its last value, and a boolean flag is `--flag`,
/// `--flag=true` or `--flag=false` (never `--flag false`: that is an argument).
pub fn go_style(command: clap::Command) -> clap::Command {
    command
        .args_override_self(true)
        .mut_args(|arg| {
            if !matches!(arg.get_action(), ArgAction::SetTrue) {
                return arg;
            }
            arg.action(ArgAction::Set)
                .num_args(0..=1)
                .require_equals(true)
                .default_value("false")
                .default_missing_value("true")
                .value_parser(go_bool)
        })
        .mut_subcommands(go_style)
}

fn context(e: &clap::Error, kind: ContextKind) -> Option<String> {
    match e.get(kind)? {
        ContextValue::String(text) => Some(text.clone()),
        ContextValue::Strings(texts) => texts.first().cloned(),
        _ => None,
    }
}

/// The help of the command whose flags did not parse, as cobra prints its
/// usage on stdout before such an error (an unknown flag, a flag's value
/// that does not parse); None for other errors. `root` is the whole CLI,
/// `argv` the arguments it refused (the command is the deepest subcommand
/// named in them before the first word that is not a flag or a flag's
/// value).
pub fn usage_after(e: &clap::Error, root: clap::Command, argv: &[OsString]) -> Option<String> {
    let flag_error = match e.kind() {
        ErrorKind::UnknownArgument => context(e, ContextKind::InvalidArg)?.starts_with('-'),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue => true,
        _ => false,
    };
    if !flag_error {
        return None;
    }
    let mut command = go_style(root);
    command.build();
    let mut words = argv.iter().skip(1).map(|w| w.to_string_lossy());
    while let Some(word) = words.next() {
        if word == "--" {
            break;
        }
        if let Some(flag) = word.strip_prefix('-').filter(|f| !f.is_empty()) {
            // A flag, and its value when it takes one and has no `=value`.
            let name = flag.trim_start_matches('-');
            let arg = command.get_arguments().find(|a| {
                a.get_long() == Some(name)
                    || (flag.len() == 1 && a.get_short() == flag.chars().next())
            });
            if arg.is_some_and(|a| {
                a.get_action().takes_values() && a.get_num_args().is_none_or(|n| n.min_values() > 0)
            }) {
                words.next();
            }
            continue;
        }
        match command.find_subcommand(word.as_ref()) {
            Some(sub) => command = sub.clone(),
            None => break,
        }
    }
    Some(command.render_help().to_string())
}

/// What cobra says and exits with where clap refuses the arguments: exit 1
/// for an unknown flag or command or a value that does not parse; 128 (as
/// etcdctl's own argument checks) for the rest; 0 for --help and --version.
pub fn clap_failure(e: clap::Error) -> Result<i32, Failure> {
    let flag = || context(&e, ContextKind::InvalidArg).unwrap_or_default();
    let message = match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            return Ok(0);
        }
        ErrorKind::UnknownArgument if flag().starts_with("--") => {
            let flag = flag();
            format!("unknown flag: {}", flag.split('=').next().unwrap_or_default())
        }
        ErrorKind::UnknownArgument if flag().starts_with('-') => {
            let flag = flag();
            let short = flag.chars().nth(1).unwrap_or('-');
            format!("unknown shorthand flag: '{short}' in {flag}")
        }
        ErrorKind::InvalidSubcommand => {
            let command = context(&e, ContextKind::InvalidSubcommand).unwrap_or_default();
            format!("unknown command {command:?} for \"corekvctl\"")
        }
        ErrorKind::ValueValidation | ErrorKind::InvalidValue => {
            let flag = flag();
            let flag = flag.split([' ', '=', '[']).next().unwrap_or_default();
            let value = context(&e, ContextKind::InvalidValue).unwrap_or_default();
            let why = std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default();
            let value = serde_json::to_string(&value).unwrap_or_default();
            format!("invalid argument {value} for \"{flag}\" flag: {why}")
        }
        _ => {
            let text = e.render().to_string();
            let text = text.trim_end().trim_start_matches("error: ");
            return Err(Failure::bad_args(text.lines().next().unwrap_or_default()));
        }
    };
    Err(Failure { code: exit_error, message })
}

/// etcdctl's global flags that corekvctl has, as `ETCDCTL_<FLAG>` names them
/// (clap's ids are the field names).
const env_flags: [(&str, &str); 4] = [
    ("ETCDCTL_ENDPOINTS", "endpoints"),
    ("ETCDCTL_WRITE_OUT", "write_out"),
    ("ETCDCTL_COMMAND_TIMEOUT", "command_timeout"),
    ("ETCDCTL_DIAL_TIMEOUT", "dial_timeout"),
];

/// etcdctl's other global flags (TLS, auth, discovery, keepalives...):
/// corekvctl has no use for them, so their variables are ignored, as is
/// ETCDCTL_API (etcdctl reads it before anything else).
const env_etcdctl_only: &[&str] = &[
    "ETCDCTL_API",
    "ETCDCTL_CACERT",
    "ETCDCTL_CERT",
    "ETCDCTL_KEY",
    "ETCDCTL_DEBUG",
    "ETCDCTL_DISCOVERY_SRV",
    "ETCDCTL_DISCOVERY_SRV_NAME",
    "ETCDCTL_HEX",
    "ETCDCTL_INSECURE_DISCOVERY",
    "ETCDCTL_INSECURE_SKIP_TLS_VERIFY",
    "ETCDCTL_INSECURE_TRANSPORT",
    "ETCDCTL_KEEPALIVE_TIME",
    "ETCDCTL_KEEPALIVE_TIMEOUT",
    "ETCDCTL_PASSWORD",
    "ETCDCTL_USER",
    "ETCDCTL_WATCH_KEY",
    "ETCDCTL_WATCH_RANGE_END",
];

/// A global flag's clap id and its value from the environment.
pub type EnvValue = (&'static str, String);

/// A global flag's value from the environment, as etcdctl's
/// SetPflagsFromEnv takes it: only where the flag is not on the command
/// line (both is an error, exit 1); an empty variable is unset (and warned
/// about, as etcdctl does); a value
/// that does not parse is ignored; an unknown ETCDCTL_ variable is warned
/// about. Returns (field id, value) pairs and the warnings.
pub fn from_env(
    matches: &ArgMatches,
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<(Vec<EnvValue>, Vec<String>), Failure> {
    let (mut values, mut warnings) = (Vec::new(), Vec::new());
    for (name, value) in env {
        let (name, value) = (name.to_string_lossy(), value.to_string_lossy());
        if !name.starts_with("ETCDCTL_") || env_etcdctl_only.contains(&name.as_ref()) {
            continue;
        }
        let Some(&(_, id)) = env_flags.iter().find(|(env, _)| *env == name) else {
            warnings.push(format!("unrecognized environment variable {name}={value}"));
            continue;
        };
        if matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
            return Err(Failure {
                code: exit_error,
                message: format!(
                    "conflicting environment variable {name:?} is shadowed by corresponding \
                     command-line flag (either unset environment variable or disable flag)"
                ),
            });
        }
        if value.is_empty() {
            // etcdctl takes an empty variable for an unset one, and then
            // calls it unrecognized.
            warnings.push(format!("unrecognized environment variable {name}="));
            continue;
        }
        if !id.ends_with("_timeout") || go_duration(&value).is_ok() {
            values.push((id, value.into_owned()));
        }
    }
    Ok((values, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_go_parses_them() {
        let ok = |text: &str| go_duration(text).unwrap();
        assert_eq!(ok("1h2m"), Duration::from_secs(3720));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("1h1h"), Duration::from_secs(7200));
        assert_eq!(ok("+1s"), Duration::from_secs(1));
        assert_eq!(ok("300ms"), Duration::from_millis(300));
        assert_eq!(ok("2us"), Duration::from_micros(2));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("-1s"), Duration::ZERO);
        assert_eq!(go_duration("5").unwrap_err(), "time: missing unit in duration \"5\"");
        assert_eq!(go_duration("1s1").unwrap_err(), "time: missing unit in duration \"1s1\"");
        assert_eq!(go_duration("1x").unwrap_err(), "time: unknown unit \"x\" in duration \"1x\"");
        assert_eq!(go_duration("abc").unwrap_err(), "time: invalid duration \"abc\"");
        assert_eq!(go_duration("").unwrap_err(), "time: invalid duration \"\"");
        assert_eq!(go_duration(".s").unwrap_err(), "time: invalid duration \".s\"");
        assert!(go_duration("3000000h").is_err(), "past Go's ~292 years");
    }

    #[test]
    fn bools_parse_as_go_parses_them() {
        assert!(go_bool("true").unwrap() && go_bool("1").unwrap() && go_bool("T").unwrap());
        assert!(!go_bool("false").unwrap() && !go_bool("0").unwrap() && !go_bool("F").unwrap());
        assert_eq!(
            go_bool("yes").unwrap_err(),
            "strconv.ParseBool: parsing \"yes\": invalid syntax"
        );
    }
}
