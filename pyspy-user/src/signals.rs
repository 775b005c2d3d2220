//! Signal names and numbers, as `kill -l` spells them, with the usual aliases accepted.

use crate::error::Error;

/// Names without `SIG`; the first name of a number is the one printed.
const NAMES: [(&str, i32); 34] = [
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
    // Aliases, accepted but never printed.
    ("IOT", libc::SIGIOT),
    ("CLD", libc::SIGCHLD),
    ("POLL", libc::SIGPOLL),
];

/// Highest signal number on Linux (`SIGRTMAX`).
const SIG_MAX: i32 = 64;

/// Parses `SIGILL`, `ILL`, `sigill`, `4`, `SIGRTMIN+2` or `RTMAX-1`. The numbers between
/// the standard signals and `SIGRTMIN` (32 and 33 with glibc, which uses them internally) are
/// refused.
pub fn parse(text: &str) -> Result<u32, Error> {
    let unknown = || Error::UnknownSignal(text.to_string());
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return if is_reserved(n) {
            Err(Error::ReservedSignal(n as u32))
        } else if (1..=SIG_MAX).contains(&n) {
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
        Some(n) if is_reserved(n) => Err(Error::ReservedSignal(n as u32)),
        _ => Err(unknown()),
    }
}

/// Signal numbers the C library keeps for itself: above the standard ones, below `SIGRTMIN`.
fn is_reserved(n: i32) -> bool {
    n > libc::SIGSYS && n < libc::SIGRTMIN()
}

/// `SIGILL` for 4; `SIGRTMAX` for the last signal and `SIGRTMIN+n` for the other real-time
/// signals; the number otherwise.
pub fn name(sig: u32) -> String {
    let n = sig as i32;
    if let Some((name, _)) = NAMES.iter().find(|(_, v)| *v == n) {
        return format!("SIG{name}");
    }
    if n == libc::SIGRTMAX() {
        return "SIGRTMAX".to_string();
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

    #[test]
    fn aliases() {
        assert_eq!(parse("SIGIOT").unwrap(), 6);
        assert_eq!(parse("cld").unwrap(), 17);
        assert_eq!(parse("SIGPOLL").unwrap(), 29);
        assert_eq!(name(6), "SIGABRT");
        assert_eq!(name(17), "SIGCHLD");
        assert_eq!(name(29), "SIGIO");
    }

    #[test]
    fn rtmax_by_name() {
        assert_eq!(parse("SIGRTMAX").unwrap(), 64);
        assert_eq!(name(64), "SIGRTMAX");
        assert_eq!(name(63), "SIGRTMIN+29");
        assert_eq!(parse(&name(64)).unwrap(), 64);
        // Every signal has its own bit in the kernel's mask, SIGRTMAX included.
        let bits: Vec<u64> = (1..=64).map(pytrace_common::signal_bit).collect();
        assert!(bits.iter().all(|b| b.count_ones() == 1));
        assert_eq!(bits.iter().fold(0, |m, b| m | b), u64::MAX);
        assert_eq!(pytrace_common::signal_bit(0), 0);
        assert_eq!(pytrace_common::signal_bit(65), 0);
    }

    #[test]
    fn glibc_reserved_numbers() {
        for text in ["32", "33", "SIGRTMIN-1", "RTMIN-2"] {
            assert!(
                matches!(parse(text), Err(Error::ReservedSignal(32 | 33))),
                "{text}"
            );
        }
        assert!(matches!(parse("RTMIN-3"), Err(Error::UnknownSignal(_))));
        assert_eq!(parse("34").unwrap() as i32, libc::SIGRTMIN());
    }
}
