//! `netloom partition LAB ...`.

use clap::Args;
use std::process::ExitCode;

use netloom_engine::{Engine, EngineError};

#[derive(Args, Debug)]
pub struct PartitionArgs {}

pub fn run(
    _engine: &mut Engine,
    _json: bool,
    _args: PartitionArgs,
) -> Result<ExitCode, EngineError> {
    Ok(ExitCode::FAILURE)
}
