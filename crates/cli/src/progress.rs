//! Progress of an index run for a person: the phase it is in (walk, parse, embed, write), what
//! it has done of that phase, the rate and the time left. On a terminal it is a bar redrawn in
//! place; otherwise (a log, CI, a pipe) one plain line when the phase changes and every few
//! seconds, so a long run never looks hung and a log shows where the time went.
//!
//! Walking and parsing run beside embedding (parsed files are embedded in batches while the
//! walk goes on), so the phase is the earliest one not finished: `parse` while files remain,
//! then `embed` while parsed units wait for vectors, then `write` until the last commit.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gnn_coder_engine::IndexProgress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain-text progress line is written within one phase.
const LINE_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Walk,
    Parse,
    Embed,
    Write,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Walk => "walk",
            Phase::Parse => "parse",
            Phase::Embed => "embed",
            Phase::Write => "write",
        }
    }

    /// The phase a run is in, with (done, total, what is counted).
    fn of(p: &IndexProgress, vectors: bool) -> (Phase, u64, u64, &'static str) {
        let embedded = p.embeddings_computed + p.embeddings_reused;
        if p.files_total == 0 {
            (Phase::Walk, p.files_done, 0, "files")
        } else if p.files_done < p.files_total {
            (Phase::Parse, p.files_done, p.files_total, "files")
        } else if vectors && embedded < p.units {
            (Phase::Embed, embedded, p.units, "units")
        } else {
            (Phase::Write, p.units_written.min(p.units), p.units, "units")
        }
    }
}

struct State {
    phase: Option<Phase>,
    /// When the phase began, and its count then (for the rate).
    since: Instant,
    done_at_start: u64,
    last_line: Instant,
}

/// The progress display of one run.
pub struct Progress {
    bar: Option<ProgressBar>,
    lines: bool,
    vectors: bool,
    started: Instant,
    state: Mutex<State>,
}

impl Progress {
    /// A display on stderr: a bar on a terminal, plain lines otherwise, nothing when `hidden`.
    /// `vectors`: the run embeds (an embed phase exists).
    pub fn new(hidden: bool, vectors: bool) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let bar = (!hidden && tty).then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(10));
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {prefix:>5} {bar:30} {pos}/{len} {msg}",
            ) {
                bar.set_style(style);
            }
            bar.set_prefix("walk");
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        Progress {
            bar,
            lines: !hidden && !tty,
            vectors,
            started: now,
            state: Mutex::new(State {
                phase: None,
                since: now,
                done_at_start: 0,
                last_line: now,
            }),
        }
    }

    pub fn update(&self, p: &IndexProgress) {
        let (phase, done, total, what) = Phase::of(p, self.vectors);
        let Ok(mut s) = self.state.lock() else { return };
        let now = Instant::now();
        let changed = s.phase != Some(phase);
        if changed {
            s.phase = Some(phase);
            s.since = now;
            s.done_at_start = done;
        }
        let secs = now.duration_since(s.since).as_secs_f64();
        let rate = (secs >= 1.0).then(|| (done.saturating_sub(s.done_at_start)) as f64 / secs);
        let left = match rate {
            Some(r) if r > 0.0 && total > done => {
                format!(
                    ", about {} left",
                    human_duration(((total - done) as f64 / r).max(1.0))
                )
            }
            _ => String::new(),
        };
        let rate = rate.map_or(String::new(), |r| format!(", {r:.0} {what}/s"));
        let detail = format!(
            "{} units parsed, {} embedded, {} reused, {} unchanged files",
            p.units, p.embeddings_computed, p.embeddings_reused, p.files_unchanged
        );
        if let Some(bar) = &self.bar {
            if changed {
                bar.set_prefix(phase.name());
            }
            bar.set_length(total.max(done));
            bar.set_position(done);
            bar.set_message(format!("{what}{rate}{left} ({detail})"));
        }
        if self.lines && (changed || now.duration_since(s.last_line) >= LINE_EVERY) {
            s.last_line = now;
            let total = if total > 0 {
                format!("/{total}")
            } else {
                String::new()
            };
            eprintln!(
                "[{:>6.1}s] {}: {done}{total} {what}{rate}{left} ({detail})",
                self.started.elapsed().as_secs_f64(),
                phase.name()
            );
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn human_duration(secs: f64) -> String {
    let s = secs.round() as u64;
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{} h {} min", s / 3600, (s % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(files: (u64, u64), units: u64, embedded: u64, written: u64) -> IndexProgress {
        IndexProgress {
            files_total: files.1,
            files_done: files.0,
            units,
            embeddings_computed: embedded,
            units_written: written,
            ..IndexProgress::default()
        }
    }

    #[test]
    fn phases_follow_the_slowest_stage() {
        let phase = |p: IndexProgress, v: bool| Phase::of(&p, v).0;
        assert_eq!(phase(progress((3, 0), 0, 0, 0), true), Phase::Walk);
        assert_eq!(phase(progress((3, 10), 50, 20, 0), true), Phase::Parse);
        assert_eq!(phase(progress((10, 10), 50, 20, 0), true), Phase::Embed);
        assert_eq!(phase(progress((10, 10), 50, 50, 10), true), Phase::Write);
        // Without vectors there is nothing to embed.
        assert_eq!(phase(progress((10, 10), 50, 0, 10), false), Phase::Write);
        assert_eq!(Phase::of(&progress((10, 10), 50, 20, 0), true).1, 20);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(42.4), "42 s");
        assert_eq!(human_duration(125.0), "2 min 5 s");
        assert_eq!(human_duration(7300.0), "2 h 1 min");
    }
}
