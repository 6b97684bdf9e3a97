//! `doctor`: which credentials would be used, whose they are and whether a token can be
//! served, explained without secrets. Exit 0 when a token can be served, else 1.

use std::process::ExitCode;

use clap::Args;
use gcp_kafka_auth_handler::{Env, doctor};

use crate::commands::args::ImpersonationArgs;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,

    /// Principal (`sub`) to check instead of the one the credentials name.
    #[arg(long, env = "GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL")]
    pub principal: Option<String>,

    #[command(flatten)]
    pub impersonation: ImpersonationArgs,
}

/// Where the report says a given principal came from: the flag or its variable (clap reads
/// both into `--principal`; the library, told nothing, names `doctor::Options::principal`).
const PRINCIPAL_ORIGIN: &str = "GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL or --principal";

/// Examines the process environment and prints the report.
pub fn run(args: DoctorArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let options = doctor::Options {
        principal: args.principal,
        principal_origin: Some(PRINCIPAL_ORIGIN.to_owned()),
        impersonate: args.impersonation.impersonate_service_account,
    };
    let report = runtime.block_on(doctor::examine(Env::from_process(), options));
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if report.can_serve() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
