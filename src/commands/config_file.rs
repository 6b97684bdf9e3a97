//! `--config FILE`: a TOML file whose keys are a subcommand's long flag names
//! (`listen = "127.0.0.1:9092"`, `resolve = ["b-0=10.0.0.5"]`, `exit-zero-on-sigterm = true`;
//! `_` may stand for `-`), plus `clusters` for the positional cluster names.
//!
//! Precedence is flag > environment variable > file > default: the command line is parsed
//! once, and every file key whose argument was not given on the command line or by its
//! variable is added as `--key=value`, then the whole is parsed again, so the file's values
//! meet the same checks as flags. An unknown key is an error that names it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command, Parser};

/// The argument id of the file flag in every subcommand that has one.
const CONFIG_ID: &str = "config";

/// Parses the process's command line, with the subcommand's `--config` file (if any) merged
/// in below flags and environment variables. Exits with clap's message on errors.
pub fn parse<C: Parser>() -> C {
    match parse_from::<C>(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    }
}

/// [`parse`] for the given arguments (the first is the program name).
pub fn parse_from<C: Parser>(args: Vec<OsString>) -> Result<C, clap::Error> {
    let command = C::command();
    // Lenient first: arguments the file supplies may be required ones.
    let lenient = command
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(&args)?;
    let strict = || {
        let matches = command.clone().try_get_matches_from(&args)?;
        C::from_arg_matches(&matches)
    };
    let Some((sub_name, sub_matches)) = lenient.subcommand() else {
        return strict();
    };
    let Some(path) = sub_matches
        .try_get_one::<PathBuf>(CONFIG_ID)
        .ok()
        .flatten()
        .cloned()
    else {
        return strict();
    };
    let sub_command = command
        .find_subcommand(sub_name)
        .expect("clap matched this subcommand")
        .clone();
    let extra = file_args(&path, &sub_command, sub_matches).map_err(|message| {
        command
            .clone()
            .error(clap::error::ErrorKind::InvalidValue, message)
    })?;
    if extra.is_empty() {
        return strict();
    }
    // The file's arguments go right after the subcommand's name, so they never end up
    // after a `--`.
    let at = args
        .iter()
        .position(|a| a == sub_name)
        .map_or(args.len(), |i| i + 1);
    let mut merged = args[..at].to_vec();
    merged.extend(extra);
    merged.extend_from_slice(&args[at..]);
    let matches = command.try_get_matches_from(merged)?;
    C::from_arg_matches(&matches)
}

/// The `--key=value` arguments the file adds (only for arguments neither the command line
/// nor the environment set).
fn file_args(
    path: &Path,
    command: &Command,
    matches: &ArgMatches,
) -> Result<Vec<OsString>, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--config {shown}: cannot read it: {e}"))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("--config {shown} is not valid TOML: {e}"))?;
    let mut extra = Vec::new();
    for (key, value) in &table {
        let flag = key.replace('_', "-");
        let arg = command
            .get_arguments()
            .find(|a| {
                a.get_long() == Some(flag.as_str())
                    || (a.is_positional() && a.get_id().as_str() == key)
            })
            .filter(|a| a.get_id().as_str() != CONFIG_ID && !a.is_hide_set())
            .ok_or_else(|| {
                let mut known: Vec<String> = command
                    .get_arguments()
                    .filter(|a| a.get_id().as_str() != CONFIG_ID && !a.is_hide_set())
                    .filter_map(|a| {
                        a.get_long()
                            .map(str::to_owned)
                            .or_else(|| a.is_positional().then(|| a.get_id().as_str().to_owned()))
                    })
                    .filter(|k| k != "help")
                    .collect();
                known.sort();
                format!(
                    "--config {shown}: unknown key `{key}`; `{}` takes: {}",
                    command.get_name(),
                    known.join(", ")
                )
            })?;
        let given = matches!(
            matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if given {
            continue;
        }
        let values: Vec<&toml::Value> = match value {
            toml::Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        for value in values {
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(format!(
                        "--config {shown}: `{key}` is a {}, not a string, number, boolean or list of them",
                        other.type_str()
                    ));
                }
            };
            if arg.is_positional() {
                extra.push(OsString::from(text));
                continue;
            }
            match arg.get_action() {
                ArgAction::SetTrue | ArgAction::SetFalse => match value {
                    toml::Value::Boolean(true) => extra.push(OsString::from(format!("--{flag}"))),
                    toml::Value::Boolean(false) => {}
                    _ => {
                        return Err(format!(
                            "--config {shown}: `{key}` is a switch: write {key} = true or false"
                        ));
                    }
                },
                _ => extra.push(OsString::from(format!("--{flag}={text}"))),
            }
        }
    }
    Ok(extra)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, Subcommand};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(Debug, Subcommand)]
    enum Sub {
        Run(RunArgs),
    }

    #[derive(Debug, Args)]
    struct RunArgs {
        #[arg(value_delimiter = ',')]
        clusters: Vec<String>,
        #[arg(long, default_value = "a")]
        name: String,
        #[arg(long)]
        resolve: Vec<String>,
        #[arg(long)]
        quiet: bool,
        #[arg(long)]
        port: Option<u16>,
        #[arg(long)]
        config: Option<PathBuf>,
    }

    fn run(file: &str, argv: &[&str]) -> Result<RunArgs, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, file).unwrap();
        let mut args: Vec<OsString> = vec!["prog".into(), "run".into()];
        args.push(format!("--config={}", path.display()).into());
        args.extend(argv.iter().map(OsString::from));
        parse_from::<Cli>(args)
            .map(|c| match c.command {
                Sub::Run(r) => r,
            })
            .map_err(|e| e.to_string().replace(&path.display().to_string(), "FILE"))
    }

    #[test]
    fn file_values_fill_what_flags_do_not_set() {
        let got = run(
            "name = \"file\"\nresolve = [\"x=1\", \"y=2\"]\nquiet = true\nport = 7\nclusters = [\"c1\"]\n",
            &[],
        )
        .unwrap();
        assert_eq!(got.name, "file");
        assert_eq!(got.resolve, ["x=1", "y=2"]);
        assert!(got.quiet);
        assert_eq!(got.port, Some(7));
        assert_eq!(got.clusters, ["c1"]);
    }

    #[test]
    fn flags_win_over_the_file() {
        let got = run(
            "name = \"file\"\nport = 7\nclusters = [\"c1\"]\n",
            &["--name", "flag", "c2"],
        )
        .unwrap();
        assert_eq!(got.name, "flag");
        assert_eq!(got.port, Some(7));
        assert_eq!(got.clusters, ["c2"]);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = run("nmae = \"x\"\n", &[]).unwrap_err();
        assert!(
            err.contains("--config FILE: unknown key `nmae`; `run` takes: clusters, name, port, quiet, resolve"),
            "{err}"
        );
        let err = run("quiet = \"yes\"\n", &[]).unwrap_err();
        assert!(
            err.contains("`quiet` is a switch: write quiet = true or false"),
            "{err}"
        );
        let err = run("port = \"many\"\n", &[]).unwrap_err();
        assert!(
            err.contains("invalid value 'many' for '--port <PORT>'"),
            "{err}"
        );
        let err = run("name = \n", &[]).unwrap_err();
        assert!(err.contains("--config FILE is not valid TOML"), "{err}");
    }
}
