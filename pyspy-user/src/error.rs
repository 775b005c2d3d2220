//! pytrace's user-facing errors: one line each, and a distinct exit code per kind so scripts
//! can tell them apart.

use std::process::ExitCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown signal {0:?} (use a name such as SIGILL or ILL, or a number from 1 to 64)")]
    UnknownSignal(String),
    #[error("no process with PID {0}")]
    NoSuchProcess(u32),
    #[error("process {pid} ({comm}) is not a Python process")]
    NotPython { pid: u32, comm: String },
    #[error("process {pid} runs Python {version}, which pytrace does not support")]
    UnsupportedPython { pid: u32, version: String },
    #[error("process {pid}: {reason}")]
    Inspect { pid: u32, reason: String },
    #[error("insufficient privileges: pytrace needs root, or CAP_BPF and CAP_PERFMON ({0})")]
    Privileges(String),
    #[error("this kernel cannot run pytrace: {0}")]
    KernelSupport(String),
    #[error("cannot attach {probe}: {reason}")]
    Attach { probe: String, reason: String },
    #[error("{0}")]
    Output(String),
    #[error("{0}")]
    Runtime(String),
    /// A combination of options that cannot work, found after parsing (exit code 2, as clap's
    /// own usage errors).
    #[error("{0}")]
    Usage(String),
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
            Error::UnknownSignal(_) => 3,
            Error::NoSuchProcess(_) => 4,
            Error::NotPython { .. } => 5,
            Error::UnsupportedPython { .. } => 6,
            Error::Inspect { .. } => 7,
            Error::Privileges(_) => 8,
            Error::KernelSupport(_) => 9,
            Error::Attach { .. } => 10,
            Error::Output(_) => 11,
            Error::Usage(_) => 2,
        }
    }
}
