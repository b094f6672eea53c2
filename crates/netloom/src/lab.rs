//! `netloom lab ...` and `netloom demo`.

use clap::{Args, Subcommand};
use std::process::ExitCode;

use netloom_engine::{Engine, EngineError};

use crate::cli::Cli;

#[derive(Subcommand, Debug)]
pub enum LabCmd {
    /// List labs.
    Ls,
}

#[derive(Args, Debug)]
pub struct DemoArgs {}

pub fn run(_engine: &mut Engine, _json: bool, _cmd: LabCmd) -> Result<ExitCode, EngineError> {
    Ok(ExitCode::FAILURE)
}

pub fn demo(_cli: &Cli, _args: &DemoArgs) -> Result<ExitCode, EngineError> {
    Ok(ExitCode::FAILURE)
}
