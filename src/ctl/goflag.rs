//! etcdctl's flag syntax (Go's pflag and cobra) on top of clap: the global
//! flags read from `ETCDCTL_<FLAG>` environment variables.

use std::ffi::OsString;

use clap::ArgMatches;

use super::{exit_error, Failure};

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
