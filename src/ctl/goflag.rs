//! etcdctl's flag syntax (Go's pflag and cobra) on top of clap: values
//! parsed as Go parses them, with Go's error words; cobra's words and exit
//! codes for arguments it refuses; and the global flags read from
//! `ETCDCTL_<FLAG>` environment variables.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::ArgMatches;

use super::{exit_error, Failure};

/// Go's strconv.ParseInt(text, 10, 64), with its error words.
pub fn go_int64(text: &str) -> Result<i64, String> {
    super::lease::go_parse_int(text, 10)
}

fn context(e: &clap::Error, kind: ContextKind) -> Option<String> {
    match e.get(kind)? {
        ContextValue::String(text) => Some(text.clone()),
        ContextValue::Strings(texts) => texts.first().cloned(),
        _ => None,
    }
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
            let flag = flag.split([' ', '=']).next().unwrap_or_default();
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
        if !id.ends_with("_timeout") || super::parse_duration(&value).is_ok() {
            values.push((id, value.into_owned()));
        }
    }
    Ok((values, warnings))
}
