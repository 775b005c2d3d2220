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

/// The word `--signal` takes for every signal whose default action kills the process.
pub const FATAL_KEYWORD: &str = "fatal";

/// What the kernel does with a signal that has no handler (`man 7 signal`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultAction {
    /// Terminates the process.
    Kill,
    /// Terminates the process and dumps core.
    Core,
    /// Stops the process.
    Stop,
    /// Discarded when generated: never delivered to a process without a handler.
    Ignore,
}

pub fn default_action(sig: u32) -> DefaultAction {
    match sig as i32 {
        libc::SIGQUIT
        | libc::SIGILL
        | libc::SIGTRAP
        | libc::SIGABRT
        | libc::SIGBUS
        | libc::SIGFPE
        | libc::SIGSEGV
        | libc::SIGXCPU
        | libc::SIGXFSZ
        | libc::SIGSYS => DefaultAction::Core,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => DefaultAction::Stop,
        libc::SIGCHLD | libc::SIGCONT | libc::SIGURG | libc::SIGWINCH => DefaultAction::Ignore,
        _ => DefaultAction::Kill,
    }
}

/// Every signal whose default action kills: the standard ones and the real-time signals
/// glibc leaves to applications (SIGRTMIN to SIGRTMAX).
pub fn fatal_signals() -> Vec<u32> {
    let standard = NAMES
        .iter()
        .map(|&(_, n)| n as u32)
        .filter(|&n| matches!(default_action(n), DefaultAction::Kill | DefaultAction::Core));
    let realtime = (libc::SIGRTMIN()..=libc::SIGRTMAX()).map(|n| n as u32);
    let mut all: Vec<u32> = standard.chain(realtime).collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// Parses every `--signal` value: each a comma list of signals (as [`parse`] reads them) or
/// `fatal`. The result is sorted, without duplicates.
pub fn parse_list<S: AsRef<str>>(values: &[S]) -> Result<Vec<u32>, Error> {
    let mut all = Vec::new();
    for value in values {
        for item in value.as_ref().split(',') {
            if item.trim().eq_ignore_ascii_case(FATAL_KEYWORD) {
                all.extend(fatal_signals());
            } else {
                all.push(parse(item)?);
            }
        }
    }
    all.sort_unstable();
    all.dedup();
    Ok(all)
}

/// `SIGTERM, SIGUSR1`, or `every fatal signal` for the whole `fatal` set.
pub fn describe(signals: &[u32]) -> String {
    if signals == fatal_signals().as_slice() {
        return "every fatal signal".to_string();
    }
    signals
        .iter()
        .map(|&s| name(s))
        .collect::<Vec<_>>()
        .join(", ")
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

    #[test]
    fn lists_repeats_and_the_fatal_set() {
        assert_eq!(parse_list(&["SIGTERM,usr1", "15"]).unwrap(), vec![10, 15]);
        let fatal = parse_list(&["fatal"]).unwrap();
        for sig in [1, 2, 3, 4, 6, 9, 10, 11, 12, 13, 14, 15, 24, 31, 34, 64] {
            assert!(fatal.contains(&sig), "{sig}");
        }
        for sig in [17, 18, 19, 20, 21, 22, 23, 28] {
            assert!(!fatal.contains(&sig), "{sig}");
        }
        assert_eq!(describe(&fatal), "every fatal signal");
        assert_eq!(describe(&[15, 10]), "SIGTERM, SIGUSR1");
        assert!(parse_list(&["TERM,FOO"]).is_err());
        assert_eq!(default_action(28), DefaultAction::Ignore);
        assert_eq!(default_action(4), DefaultAction::Core);
        assert_eq!(default_action(20), DefaultAction::Stop);
        assert_eq!(default_action(14), DefaultAction::Kill);
    }
}
