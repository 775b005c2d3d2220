//! `pytrace top`: a live view of the functions the sampled Python processes spend their CPU
//! time in, like `py-spy top`: own and total samples per function over the last second, and
//! since the start, refreshed every second. Keys: `1`–`4` sort by a column, `q` or Ctrl-C quits.
//! The terminal is restored on every way out (ratatui's own hooks cover a panic).

use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, Instant},
};

use ratatui::{
    crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers},
    layout::{Constraint, Layout},
    style::{Modifier, Style},
    text::Line,
    widgets::{Paragraph, Row, Table},
    DefaultTerminal,
};

use crate::{
    error::Error,
    model::Capture,
    profile::Frame,
    record::sample_of,
    session::{Consumer, Flow, Progress},
};

/// How often the view is redrawn.
const REFRESH: Duration = Duration::from_secs(1);

/// Columns the view can be sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    OwnPercent,
    TotalPercent,
    OwnTime,
    TotalTime,
}

/// Samples of one function, over the last interval and since the start.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    own: u64,
    total: u64,
    own_all: u64,
    total_all: u64,
}

/// Per-function statistics of a stream of samples (no terminal: unit-testable).
#[derive(Default)]
pub struct Stats {
    functions: HashMap<Frame, Counts>,
    /// Samples with a stack in the current interval, and since the start.
    pub interval_samples: u64,
    pub samples: u64,
    interval_gil: u64,
    /// Samples without a stack since the start.
    pub unwalked: u64,
    processes: BTreeSet<u32>,
}

/// One row of the view.
#[derive(Clone, Debug, PartialEq)]
pub struct RowData {
    pub own_percent: f64,
    pub total_percent: f64,
    pub own_seconds: f64,
    pub total_seconds: f64,
    pub label: String,
}

impl Stats {
    /// Adds one capture: its leaf function gets an own sample, every distinct function on its
    /// stack a total sample.
    pub fn add(&mut self, c: &Capture) {
        let Ok(sample) = sample_of(c) else {
            self.unwalked += 1;
            return;
        };
        self.samples += 1;
        self.interval_samples += 1;
        self.interval_gil += u64::from(sample.held_gil);
        self.processes.insert(sample.pid);
        for (i, frame) in sample.frames.iter().enumerate() {
            if sample.frames[..i].contains(frame) {
                continue; // recursion: once per sample
            }
            let counts = self.functions.entry(frame.clone()).or_default();
            counts.total += 1;
            counts.total_all += 1;
            if i == 0 {
                counts.own += 1;
                counts.own_all += 1;
            }
        }
    }

    /// Rows sorted by `key` (ties by label), at most `limit`.
    pub fn rows(&self, key: SortKey, hz: u64, limit: usize) -> Vec<RowData> {
        let n = self.interval_samples.max(1) as f64;
        let mut rows: Vec<RowData> = self
            .functions
            .iter()
            .map(|(f, c)| RowData {
                own_percent: c.own as f64 * 100.0 / n,
                total_percent: c.total as f64 * 100.0 / n,
                own_seconds: c.own_all as f64 / hz as f64,
                total_seconds: c.total_all as f64 / hz as f64,
                label: label(f),
            })
            .collect();
        let value = |r: &RowData| match key {
            SortKey::OwnPercent => (r.own_percent, r.own_seconds),
            SortKey::TotalPercent => (r.total_percent, r.total_seconds),
            SortKey::OwnTime => (r.own_seconds, r.own_percent),
            SortKey::TotalTime => (r.total_seconds, r.total_percent),
        };
        rows.sort_by(|a, b| {
            value(b)
                .partial_cmp(&value(a))
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.label.cmp(&b.label))
        });
        rows.truncate(limit);
        rows
    }

    /// Starts a new interval: the percentages cover the last one only.
    fn next_interval(&mut self) {
        self.interval_samples = 0;
        self.interval_gil = 0;
        for c in self.functions.values_mut() {
            c.own = 0;
            c.total = 0;
        }
    }
}

/// `function (file:line)`, with control characters of target strings escaped.
fn label(f: &Frame) -> String {
    let line = f.line.map_or("?".to_string(), |l| l.to_string());
    escape(&format!("{} ({}:{line})", f.name, f.filename))
}

fn escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// The live view: statistics plus the terminal they are drawn on.
pub struct Top {
    pub stats: Stats,
    terminal: DefaultTerminal,
    hz: u64,
    sort: SortKey,
    last_draw: Instant,
    last_progress: Option<(Duration, u64)>,
    samples_per_second: f64,
    gil_share: Option<f64>,
    processes: usize,
    lost: u64,
}

impl Top {
    /// Takes over the terminal (alternate screen, raw mode).
    pub fn new(hz: u64) -> Result<Self, Error> {
        let terminal = ratatui::try_init()
            .map_err(|e| Error::Output(format!("cannot set up the terminal: {e}")))?;
        Ok(Top {
            stats: Stats::default(),
            terminal,
            hz,
            sort: SortKey::OwnPercent,
            last_draw: Instant::now(),
            last_progress: None,
            samples_per_second: 0.0,
            gil_share: None,
            processes: 0,
            lost: 0,
        })
    }

    /// Gives the terminal back as it was.
    pub fn restore(self) {
        ratatui::restore();
    }

    /// Handles waiting keys; `Flow::Stop` on `q`, Esc or Ctrl-C.
    fn keys(&mut self) -> Flow {
        while event::poll(Duration::ZERO).unwrap_or(false) {
            let Ok(Event::Key(key)) = event::read() else {
                continue;
            };
            if key.kind != KeyEventKind::Press {
                continue;
            }
            match key.code {
                KeyCode::Char('q') | KeyCode::Esc => return Flow::Stop,
                KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                    return Flow::Stop
                }
                KeyCode::Char('1') => self.sort = SortKey::OwnPercent,
                KeyCode::Char('2') => self.sort = SortKey::TotalPercent,
                KeyCode::Char('3') => self.sort = SortKey::OwnTime,
                KeyCode::Char('4') => self.sort = SortKey::TotalTime,
                _ => continue,
            }
            self.draw();
        }
        Flow::Continue
    }

    fn draw(&mut self) {
        let header = format!(
            "pytrace top — {:.0} samples/s, {} process(es), {} lost, GIL {}   \
             (sort: 1 %Own 2 %Total 3 OwnTime 4 TotalTime; q quits)",
            self.samples_per_second,
            self.processes,
            self.lost,
            self.gil_share
                .map_or("-".to_string(), |g| format!("{:.0}%", g * 100.0)),
        );
        let sort = self.sort;
        let hz = self.hz;
        let stats = &self.stats;
        let _ = self.terminal.draw(|frame| {
            let [top, body] =
                Layout::vertical([Constraint::Length(2), Constraint::Min(1)]).areas(frame.area());
            frame.render_widget(Paragraph::new(Line::from(header)), top);
            let rows = stats.rows(sort, hz, body.height.saturating_sub(1) as usize);
            let titles = [
                "%Own",
                "%Total",
                "OwnTime",
                "TotalTime",
                "Function (filename:line)",
            ];
            let header_row = Row::new(titles.iter().enumerate().map(|(i, t)| {
                let style = if i == sort as usize {
                    Style::new().add_modifier(Modifier::REVERSED)
                } else {
                    Style::new().add_modifier(Modifier::BOLD)
                };
                ratatui::text::Span::styled(*t, style)
            }));
            let table = Table::new(
                rows.into_iter().map(|r| {
                    Row::new(vec![
                        format!("{:5.1}%", r.own_percent),
                        format!("{:5.1}%", r.total_percent),
                        format!("{:6.2}s", r.own_seconds),
                        format!("{:6.2}s", r.total_seconds),
                        r.label,
                    ])
                }),
                [
                    Constraint::Length(7),
                    Constraint::Length(7),
                    Constraint::Length(9),
                    Constraint::Length(10),
                    Constraint::Min(10),
                ],
            )
            .header(header_row);
            frame.render_widget(table, body);
        });
        self.last_draw = Instant::now();
    }
}

impl Consumer for Top {
    fn capture(&mut self, capture: Capture) -> Result<Flow, Error> {
        self.stats.add(&capture);
        Ok(Flow::Continue)
    }

    fn tick(&mut self, p: &Progress) -> Flow {
        if self.keys() == Flow::Stop {
            return Flow::Stop;
        }
        if self.last_draw.elapsed() < REFRESH {
            return Flow::Continue;
        }
        let (elapsed, samples) = (p.elapsed, self.stats.samples);
        if let Some((t0, s0)) = self.last_progress {
            let dt = elapsed.saturating_sub(t0).as_secs_f64();
            if dt > 0.0 {
                self.samples_per_second = samples.saturating_sub(s0) as f64 / dt;
            }
        }
        self.last_progress = Some((elapsed, samples));
        self.gil_share = (self.stats.interval_samples > 0)
            .then(|| self.stats.interval_gil as f64 / self.stats.interval_samples as f64);
        self.processes = p.processes;
        self.lost = p.lost + self.stats.unwalked;
        self.draw();
        self.stats.next_interval();
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChainEntry, Frame as ModelFrame, PyText, ThreadStack, TriggerInfo};

    fn capture(stack: &[&str]) -> Capture {
        Capture {
            pid: 1,
            tid: 1,
            trigger: TriggerInfo::Timer { cpu: 0 },
            threads: vec![ThreadStack {
                chain: stack
                    .iter()
                    .map(|n| {
                        ChainEntry::Frame(ModelFrame {
                            filename: Some(PyText::from_text("a.py")),
                            name: Some(PyText::from_text(n)),
                            line: Some(1),
                        })
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn own_and_total_per_function_recursion_counted_once() {
        let mut s = Stats::default();
        s.add(&capture(&["leaf", "mid", "main"]));
        s.add(&capture(&["mid", "mid", "main"]));
        s.add(&capture(&["leaf", "main"]));
        s.add(&Capture::default());
        let rows = s.rows(SortKey::TotalPercent, 100, 10);
        let get = |n: &str| {
            rows.iter()
                .find(|r| r.label.starts_with(n))
                .unwrap()
                .clone()
        };
        assert_eq!(get("main").total_percent, 100.0);
        assert_eq!(get("main").own_percent, 0.0);
        assert!((get("mid").total_percent - 200.0 / 3.0).abs() < 1e-9);
        assert!((get("mid").own_percent - 100.0 / 3.0).abs() < 1e-9);
        assert_eq!(get("leaf").own_seconds, 0.02);
        assert_eq!(rows[0].label, "main (a.py:1)");
        assert_eq!(s.unwalked, 1);
        assert_eq!(
            s.rows(SortKey::OwnPercent, 100, 10)[0].label,
            "leaf (a.py:1)"
        );
    }
}
