//! Signal names and numbers, as `kill -l` spells them.

use crate::error::Error;

const NAMES: [(&str, i32); 31] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Highest signal number on Linux (`SIGRTMAX`).
const SIG_MAX: i32 = 64;

/// Parses `SIGILL`, `ILL`, `sigill`, `4`, `SIGRTMIN+2` or `RTMAX-1`.
pub fn parse(text: &str) -> Result<u32, Error> {
    let unknown = || Error::UnknownSignal(text.to_string());
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return if (1..=SIG_MAX).contains(&n) {
            Ok(n as u32)
        } else {
            Err(unknown())
        };
    }
    let upper = t.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, n)) = NAMES.iter().find(|(name, _)| *name == bare) {
        return Ok(n as u32);
    }
    let rt = |base: i32, rest: &str| -> Option<i32> {
        if rest.is_empty() {
            return Some(base);
        }
        let (sign, digits) = rest.split_at(1);
        let k: i32 = digits.parse().ok()?;
        Some(if sign == "+" {
            base + k
        } else if sign == "-" {
            base - k
        } else {
            return None;
        })
    };
    let n = if let Some(rest) = bare.strip_prefix("RTMIN") {
        rt(libc::SIGRTMIN(), rest)
    } else if let Some(rest) = bare.strip_prefix("RTMAX") {
        rt(libc::SIGRTMAX(), rest)
    } else {
        None
    };
    match n {
        Some(n) if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&n) => Ok(n as u32),
        _ => Err(unknown()),
    }
}

/// `SIGILL` for 4; `SIGRTMIN+n` for real-time signals; the number otherwise.
pub fn name(sig: u32) -> String {
    let n = sig as i32;
    if let Some((name, _)) = NAMES.iter().find(|(_, v)| *v == n) {
        return format!("SIG{name}");
    }
    if n >= libc::SIGRTMIN() && n <= libc::SIGRTMAX() {
        return format!("SIGRTMIN+{}", n - libc::SIGRTMIN());
    }
    sig.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_junk() {
        assert_eq!(parse("SIGILL").unwrap(), 4);
        assert_eq!(parse("ill").unwrap(), 4);
        assert_eq!(parse("4").unwrap(), 4);
        assert_eq!(parse("SIGUSR2").unwrap(), 12);
        assert_eq!(parse("SIGRTMIN+1").unwrap() as i32, libc::SIGRTMIN() + 1);
        assert!(matches!(parse("SIGFOO"), Err(Error::UnknownSignal(_))));
        assert!(parse("0").is_err());
        assert!(parse("65").is_err());
        assert!(parse("RTMIN+99").is_err());
        assert_eq!(name(4), "SIGILL");
        assert_eq!(name(parse("RTMIN+3").unwrap()), "SIGRTMIN+3");
    }
}
