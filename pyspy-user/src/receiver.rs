//! Which interpreter faulthandler dumps, and which of its thread states it calls current.
//!
//! faulthandler's signal handlers (every version from 3.6 to 3.14) call
//! `_Py_DumpTracebackThreads(fd, NULL, PyGILState_GetThisThreadState())`: the current thread
//! state is the one the receiving OS thread's gilstate TSS slot holds, and the interpreter
//! dumped is that thread state's interpreter, or, when the slot is empty, the main one
//! (`_PyGILState_GetInterpreterStateUnsafe()`, set for the main interpreter only).
//!
//! The kernel cannot read the TSS slot (a glibc-private pthread key), so the walker tags every
//! thread state with what identifies it instead: whether its `thread_id` is the receiving
//! thread's `pthread_self()` and, where the version has it, its `_status` word. How the slot
//! is filled differs by version (data: `VersionLayout::gilstate_bound_mask`):
//!
//! - ≤3.11: the slot takes the first thread state made in an OS thread, and thread-state
//!   swaps (sub-interpreters run in an existing thread) do not change it. Thread lists and
//!   the interpreter list run newest first, so it is the *last* thread state in walk order
//!   whose `thread_id` is the receiver's.
//! - 3.12+: every swap re-binds the slot to the thread state swapped in, and marks it with
//!   `_status.bound_gilstate` (cleared on the one it replaces). 3.12's `run_string` swaps in a
//!   sub-interpreter's first thread state, whose `thread_id` is that of the thread that
//!   created the sub-interpreter, whatever thread runs it: a bound thread state can carry
//!   another thread's id. Such a thread state is always a sub-interpreter's and shares its id
//!   with another bound one; it is set apart before the receiver's own is looked for.
//!
//! When the records do not settle the question (ambiguous ids, threads past the 100th of a
//! list, an unreadable `_status`, a list cut short), the choice is reported as uncertain and
//! the dump says so.

/// What the walker recorded about one thread state, in walk order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Position of its interpreter in the interpreter list (0 = newest).
    pub interp: u32,
    pub thread_id: u64,
    /// `thread_id` is the receiving thread's `pthread_self()`.
    pub receiver_id: bool,
    /// The `_status` word, where the version has one and it was read.
    pub status: Option<u32>,
}

/// What the walker recorded about the interpreter list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListFacts {
    /// Interpreters walked.
    pub count: u32,
    /// The walk reached the end of the interpreter list (so its last entry, the oldest, is
    /// the main interpreter).
    pub complete: bool,
    /// Some interpreter had threads the walk did not look at (past `MAX_THREADS`).
    pub hidden_threads: bool,
}

/// faulthandler's choice, as far as the records tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    /// Index (in walk order) of the thread state faulthandler calls current.
    pub current: Option<usize>,
    /// The interpreter whose threads faulthandler prints; `None` when none was walked.
    pub interp: Option<u32>,
    /// The interpreter list's main interpreter, when known.
    pub main: Option<u32>,
    /// The records leave the choice open: the dump must say so.
    pub uncertain: bool,
}

/// Applies the rules in the module header. `gilstate_bound_mask` is the version's
/// `bound_gilstate` bit (3.12+), `None` before.
pub fn choose(seen: &[Seen], list: ListFacts, gilstate_bound_mask: Option<u32>) -> Choice {
    let main = (list.complete && list.count > 0).then(|| list.count - 1);
    let (current, mut uncertain) = match gilstate_bound_mask {
        None => first_made(seen),
        Some(mask) => bound(seen, main, mask),
    };
    let interp = match current {
        Some(i) => Some(seen[i].interp),
        None => {
            // Only threads past a list's 100th could still hold the receiver's slot.
            if list.count > 1 && list.hidden_threads {
                uncertain = true;
            }
            match main {
                Some(m) => Some(m),
                None if list.count == 0 => None,
                None => {
                    uncertain = true;
                    Some(list.count - 1)
                }
            }
        }
    };
    Choice {
        current,
        interp,
        main,
        uncertain,
    }
}

/// ≤3.11: the last thread state in walk order with the receiver's id.
fn first_made(seen: &[Seen]) -> (Option<usize>, bool) {
    (seen.iter().rposition(|s| s.receiver_id), false)
}

/// 3.12+: the bound thread state with the receiver's id, once the bound ones that carry
/// another thread's id are set apart.
fn bound(seen: &[Seen], main: Option<u32>, mask: u32) -> (Option<usize>, bool) {
    let unreadable = seen.iter().any(|s| s.status.is_none());
    let is_bound = |s: &Seen| s.status.is_some_and(|st| st & mask != 0);
    let bound: Vec<usize> = (0..seen.len()).filter(|&i| is_bound(&seen[i])).collect();
    // A sub-interpreter's bound thread state whose id another bound one also carries.
    let borrowed = |i: usize| {
        Some(seen[i].interp) != main
            && bound
                .iter()
                .any(|&j| j != i && seen[j].thread_id == seen[i].thread_id)
    };
    let (borrowed_ids, own): (Vec<usize>, Vec<usize>) =
        bound.iter().copied().partition(|&i| borrowed(i));
    let mine: Vec<usize> = own.into_iter().filter(|&i| seen[i].receiver_id).collect();
    match mine[..] {
        [only] => (Some(only), false),
        [first, ..] => (Some(first), true),
        [] => {
            let has_own_state = seen.iter().any(|s| s.receiver_id);
            match (has_own_state, &borrowed_ids[..]) {
                // The receiver has a thread state, but its slot holds another one: the one
                // running there under another thread's id.
                (true, [only]) => (Some(*only), unreadable),
                (true, _) => (None, true),
                (false, _) => (None, unreadable),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN_ID: u64 = 0x7f00_0000_0001;
    const T_ID: u64 = 0x7f00_0000_0002;
    const BOUND: u32 = 1 | 2 | 8;
    const UNBOUND: u32 = 1 | 2;

    fn seen(interp: u32, thread_id: u64, receiver: u64, status: Option<u32>) -> Seen {
        Seen {
            interp,
            thread_id,
            receiver_id: thread_id == receiver,
            status,
        }
    }

    fn list(count: u32) -> ListFacts {
        ListFacts {
            count,
            complete: true,
            hidden_threads: false,
        }
    }

    /// 3.12: a sub-interpreter (index 0) runs in thread T through its first thread state,
    /// made by the main thread; the main thread runs main-interpreter code.
    fn sub_in_worker(receiver: u64) -> Vec<Seen> {
        vec![
            seen(0, MAIN_ID, receiver, Some(BOUND)),
            seen(1, T_ID, receiver, Some(UNBOUND)),
            seen(1, MAIN_ID, receiver, Some(BOUND)),
        ]
    }

    #[test]
    fn single_interpreter_receiver_is_current() {
        let s = [
            seen(0, T_ID, MAIN_ID, Some(BOUND)),
            seen(0, MAIN_ID, MAIN_ID, Some(BOUND)),
        ];
        let c = choose(&s, list(1), Some(8));
        assert_eq!(
            (c.current, c.interp, c.uncertain),
            (Some(1), Some(0), false)
        );
        let c = choose(&s, list(1), None);
        assert_eq!(
            (c.current, c.interp, c.uncertain),
            (Some(1), Some(0), false)
        );
    }

    #[test]
    fn signal_in_a_non_python_thread_dumps_the_main_interpreter() {
        let s = sub_in_worker(0x1234);
        let c = choose(&s, list(2), Some(8));
        assert_eq!((c.current, c.interp, c.uncertain), (None, Some(1), false));
    }

    #[test]
    fn v3_12_main_thread_while_a_worker_runs_a_sub_interpreter() {
        let c = choose(&sub_in_worker(MAIN_ID), list(2), Some(8));
        assert_eq!(
            (c.current, c.interp, c.uncertain),
            (Some(2), Some(1), false)
        );
    }

    #[test]
    fn v3_12_worker_running_a_sub_interpreter_under_the_main_thread_s_id() {
        let c = choose(&sub_in_worker(T_ID), list(2), Some(8));
        assert_eq!(
            (c.current, c.interp, c.uncertain),
            (Some(0), Some(0), false)
        );
    }

    #[test]
    fn v3_12_main_thread_running_a_sub_interpreter() {
        let s = [
            seen(0, MAIN_ID, MAIN_ID, Some(BOUND)),
            seen(1, MAIN_ID, MAIN_ID, Some(UNBOUND)),
        ];
        let c = choose(&s, list(2), Some(8));
        assert_eq!(
            (c.current, c.interp, c.uncertain),
            (Some(0), Some(0), false)
        );
    }

    #[test]
    fn up_to_3_11_the_first_made_thread_state_keeps_the_slot() {
        // The sub-interpreter's thread state was made in the main thread, after its own.
        let s = [
            seen(0, MAIN_ID, MAIN_ID, None),
            seen(1, MAIN_ID, MAIN_ID, None),
        ];
        let c = choose(&s, list(2), None);
        assert_eq!(
            (c.current, c.interp, c.uncertain),
            (Some(1), Some(1), false)
        );
    }

    #[test]
    fn open_questions_are_uncertain() {
        // Two bound thread states of the main interpreter with the receiver's id.
        let s = [
            seen(0, MAIN_ID, MAIN_ID, Some(BOUND)),
            seen(0, MAIN_ID, MAIN_ID, Some(BOUND)),
        ];
        assert!(choose(&s, list(1), Some(8)).uncertain);
        // The interpreter list was cut short: its main interpreter is unknown.
        let s = [seen(0, T_ID, MAIN_ID, Some(BOUND))];
        let cut = ListFacts {
            count: 8,
            complete: false,
            hidden_threads: false,
        };
        let c = choose(&s, cut, Some(8));
        assert_eq!((c.interp, c.uncertain), (Some(7), true));
        // No thread of the receiver among the first 100 of two lists.
        let hidden = ListFacts {
            count: 2,
            complete: true,
            hidden_threads: true,
        };
        assert!(choose(&s, hidden, Some(8)).uncertain);
        // An unreadable `_status` where the receiver has none bound.
        let s = [seen(0, MAIN_ID, MAIN_ID, None)];
        assert!(choose(&s, list(1), Some(8)).uncertain);
        // Nothing walked.
        let c = choose(&[], list(0), Some(8));
        assert_eq!((c.current, c.interp), (None, None));
    }
}
