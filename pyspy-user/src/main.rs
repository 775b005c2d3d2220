//! `pytrace` binary: parse arguments, run, map errors to one line and an exit code.

use std::process::ExitCode;

use clap::Parser;
use pytrace::{cli::Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run::main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.already_reported() {
                eprintln!("pytrace: error: {e}");
            }
            e.exit_code()
        }
    }
}
