//! pytrace's user-facing errors: one line each, and a distinct exit code per kind so scripts
//! can tell them apart. Messages may hold text from a target (a `comm`, a path): whoever
//! prints them escapes them ([`crate::escape::field`]).

use std::process::ExitCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("unknown signal \"{0}\" (use a name such as SIGILL or ILL, or a number from 1 to 64)")]
    UnknownSignal(String),
    #[error(
        "signal {0} is reserved by the C library (glibc uses 32 and 33 for its threads); real-time \
         signals for applications start at SIGRTMIN (34)"
    )]
    ReservedSignal(u32),
    #[error("no process with PID {0}")]
    NoSuchProcess(u32),
    #[error("process {0} has exited and has not been reaped by its parent yet (a zombie)")]
    Zombie(u32),
    #[error("process {pid} ({comm}) is not a Python process")]
    NotPython { pid: u32, comm: String },
    #[error("process {pid} runs Python {version}, which pytrace does not support")]
    UnsupportedPython { pid: u32, version: String },
    #[error("process {pid}: {reason}")]
    Inspect { pid: u32, reason: String },
    #[error("cannot inspect processes: {0}")]
    NoProcfs(String),
    #[error("insufficient privileges: {0}")]
    Privileges(String),
    #[error("this kernel cannot run pytrace: {0}")]
    KernelSupport(String),
    #[error("cannot attach {probe}: {reason}")]
    Attach { probe: String, reason: String },
    #[error("{0}")]
    Output(String),
    #[error("{0}")]
    Runtime(String),
    /// Errors already written to standard error, one line each (an on-demand dump of several
    /// PIDs); the status is the first one's.
    #[error("{}", .0.first().map(ToString::to_string).unwrap_or_default())]
    Reported(Vec<Error>),
}

impl Error {
    /// Exit status for this error. 0 is success and 2 is a command-line usage error (clap).
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }

    /// Whether the error's lines are already on standard error.
    pub fn already_reported(&self) -> bool {
        matches!(self, Error::Reported(_))
    }

    fn code(&self) -> u8 {
        match self {
            Error::Reported(errors) => errors.first().map_or(1, Error::code),
            Error::Runtime(_) => 1,
            Error::Usage(_) => 2,
            Error::UnknownSignal(_) | Error::ReservedSignal(_) => 3,
            Error::NoSuchProcess(_) | Error::Zombie(_) => 4,
            Error::NotPython { .. } => 5,
            Error::UnsupportedPython { .. } => 6,
            Error::Inspect { .. } | Error::NoProcfs(_) => 7,
            Error::Privileges(_) => 8,
            Error::KernelSupport(_) => 9,
            Error::Attach { .. } => 10,
            Error::Output(_) => 11,
        }
    }
}
