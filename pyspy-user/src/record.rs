//! `pytrace record`'s consumer: each timer capture becomes one profile [`Sample`] (its thread's
//! Python frames, leaf first), and samples that could not be walked are counted by reason;
//! the profile writes the whole file at the end.

use std::{
    collections::{BTreeMap, HashMap},
    io::{IsTerminal, Write},
    time::Duration,
};

use pytrace_common::SAMPLE_MAX_FRAMES;

use crate::{
    error::Error,
    model::{Capture, ChainEntry, InterpreterState, PyText},
    profile::{Frame, ProfileOutput, Sample},
    session::{Consumer, Flow, Progress},
};

/// Reasons a sample holds no stack or a partial one (the names every format shows).
pub mod reason {
    /// The process's interpreter (or its thread list) could not be read: not initialised yet,
    /// or finalising.
    pub const NOT_PYTHON_YET: &str = "not Python yet";
    /// The interrupted thread has no thread state: not a Python thread.
    pub const NO_THREAD_STATE: &str = "no thread state";
    /// A read of the target's memory failed part-way.
    pub const UNREADABLE_MEMORY: &str = "unreadable memory";
    /// Records of the sample did not fit in the ring buffer.
    pub const RING_BUFFER_FULL: &str = "ring buffer full";
    /// The sampling program found another capture running on its CPU.
    pub const NESTED: &str = "nested";
    /// The stack is deeper than the frames a sample keeps (`SAMPLE_MAX_FRAMES`): its root
    /// side is cut, marked `[truncated]`.
    pub const TOO_DEEP: &str = "too deep";
}

/// Turns captures into samples for a profile output.
pub struct Recorder<P: ProfileOutput> {
    pub profile: P,
    /// Samples delivered to the profile.
    pub samples: u64,
    /// Samples without a stack, by reason.
    pub unwalked: BTreeMap<&'static str, u64>,
    /// Samples of processes whose GIL layout is unknown (never "held" under `--gil`).
    pub gil_unknown: u64,
    thread_names: HashMap<(u32, u32), Option<String>>,
    progress: bool,
    last_progress: Duration,
}

impl<P: ProfileOutput> Recorder<P> {
    pub fn new(profile: P) -> Self {
        Recorder {
            profile,
            samples: 0,
            unwalked: BTreeMap::new(),
            gil_unknown: 0,
            thread_names: HashMap::new(),
            progress: std::io::stderr().is_terminal(),
            last_progress: Duration::ZERO,
        }
    }

    /// Counts samples lost before they became captures.
    pub fn lost(&mut self, reason: &'static str, count: u64) {
        if count > 0 {
            *self.unwalked.entry(reason).or_default() += count;
            self.profile.lost(reason, count);
        }
    }

    /// The sample of one timer capture (with its thread's name), or why there is none.
    pub fn sample(&mut self, c: &Capture) -> Result<Sample, &'static str> {
        let mut sample = sample_of(c)?;
        sample.thread_name = self.thread_name(c.pid, c.tid);
        Ok(sample)
    }

    /// The thread's name (`/proc/PID/task/TID/comm`), read once per thread.
    fn thread_name(&mut self, pid: u32, tid: u32) -> Option<String> {
        self.thread_names
            .entry((pid, tid))
            .or_insert_with(|| crate::process::procfs::thread_name(pid, tid))
            .clone()
    }
}

/// The sample of one timer capture (without a thread name), or why there is none.
pub fn sample_of(c: &Capture) -> Result<Sample, &'static str> {
    let Some(thread) = c.threads.first() else {
        return Err(if c.interpreter_state != InterpreterState::Initialised {
            reason::NOT_PYTHON_YET
        } else if c.lost_records > 0 {
            reason::RING_BUFFER_FULL
        } else {
            reason::NO_THREAD_STATE
        });
    };
    let mut frames = Vec::new();
    let mut real = 0u32;
    for entry in &thread.chain {
        let ChainEntry::Frame(f) = entry else {
            continue;
        };
        real += 1;
        if real > SAMPLE_MAX_FRAMES {
            // The extra frame only tells that the stack goes on.
            break;
        }
        frames.push(Frame {
            name: text(&f.name),
            filename: text(&f.filename),
            line: f.line.and_then(|l| u32::try_from(l).ok()),
        });
    }
    let incomplete = if thread.torn {
        Some(reason::UNREADABLE_MEMORY.to_string())
    } else if c.lost_records > 0 {
        Some(reason::RING_BUFFER_FULL.to_string())
    } else {
        None
    };
    Ok(Sample {
        pid: c.pid,
        comm: c.comm.clone(),
        tid: c.tid,
        thread_name: None,
        held_gil: c.gil_known && thread.holds_gil,
        time_ns: c.time_ns,
        frames,
        truncated: thread.chain_continues || real > SAMPLE_MAX_FRAMES,
        incomplete,
    })
}

/// `???` where the kernel could not read a string, as faulthandler prints it.
fn text(t: &Option<PyText>) -> String {
    t.as_ref()
        .map(PyText::to_string_lossy)
        .unwrap_or_else(|| "???".into())
}

impl<P: ProfileOutput> Consumer for Recorder<P> {
    fn capture(&mut self, capture: Capture) -> Result<Flow, Error> {
        match self.sample(&capture) {
            Ok(sample) => {
                if !capture.gil_known {
                    self.gil_unknown += 1;
                }
                self.profile.record(&sample);
                self.samples += 1;
            }
            Err(reason) => self.lost(reason, 1),
        }
        Ok(Flow::Continue)
    }

    fn tick(&mut self, p: &Progress) -> Flow {
        if !self.progress || p.elapsed < self.last_progress + Duration::from_secs(1) {
            return Flow::Continue;
        }
        self.last_progress = p.elapsed;
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\rpytrace: recording: {:.0} s, {} samples, {} process(es)   ",
            p.elapsed.as_secs_f64(),
            self.samples,
            p.processes
        );
        let _ = err.flush();
        Flow::Continue
    }
}

impl Recorder<crate::profile::Profile> {
    /// The closing line: samples written, those with a partial stack (marked in the file) and
    /// those without one, by reason, and how they add up to the `started` samples the kernel
    /// counted (a difference is said, never hidden).
    pub fn summary(&self, path: &std::path::Path, started: u64) -> String {
        let agg = &self.profile.aggregate;
        let mut line = format!(
            "pytrace: wrote {} samples to {}",
            self.samples,
            path.display()
        );
        let filtered = agg.filtered_no_gil();
        if filtered > 0 {
            line.push_str(&format!(" ({filtered} without the GIL left out by --gil)"));
        }
        let mut partial: Vec<String> = Vec::new();
        if agg.truncated() > 0 {
            partial.push(format!("{}: {}", reason::TOO_DEEP, agg.truncated()));
        }
        partial.extend(agg.incomplete().iter().map(|(r, n)| format!("{r}: {n}")));
        if !partial.is_empty() {
            line.push_str(&format!("; with a partial stack: {}", partial.join(", ")));
        }
        if !self.unwalked.is_empty() {
            let reasons: Vec<String> = self
                .unwalked
                .iter()
                .map(|(r, n)| format!("{r}: {n}"))
                .collect();
            line.push_str(&format!("; without a stack: {}", reasons.join(", ")));
        }
        let accounted = self.samples + self.unwalked.values().sum::<u64>();
        line.push_str(&format!("; {started} taken"));
        if accounted != started {
            line.push_str(&format!(
                " ({} unaccounted for)",
                started as i128 - accounted as i128
            ));
        }
        line
    }
}

impl<P: ProfileOutput> Recorder<P> {
    /// Ends the progress line, if one was written.
    pub fn end_progress(&self) {
        if self.progress && self.last_progress > Duration::ZERO {
            eprintln!();
        }
    }
}
