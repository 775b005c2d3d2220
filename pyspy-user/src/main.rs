//! `pytrace` binary: parse arguments, run, map errors to one line and an exit code.

use std::process::ExitCode;

use clap::{error::ErrorKind, Parser};
use pytrace::{
    cli::{self, Cli},
    error::Error,
    escape, run,
};

fn main() -> ExitCode {
    let result = match Cli::try_parse() {
        Ok(cli) => run::main(cli),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => Err(Error::Usage(cli::one_line(&e))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.already_reported() {
                // Messages can hold a target's name or paths: escaped, on one line.
                let line = format!("pytrace: error: {}\n", escape::field(&e.to_string()));
                let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            }
            e.exit_code()
        }
    }
}
