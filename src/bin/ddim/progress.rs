//! A one-line progress bar on stderr, redrawn in place on a terminal and printed sparsely
//! otherwise (so CI logs stay short).

use std::io::{IsTerminal, Write};
use std::time::Instant;

pub struct Bar {
    label: String,
    start: Instant,
    tty: bool,
    last_pct: usize,
}

impl Bar {
    pub fn new(label: &str) -> Self {
        Bar {
            label: label.to_string(),
            start: Instant::now(),
            tty: std::io::stderr().is_terminal(),
            last_pct: usize::MAX,
        }
    }

    pub fn update(&mut self, done: usize, total: usize) {
        let pct = done * 100 / total.max(1);
        if !self.tty && pct / 25 == self.last_pct / 25 && done != total {
            return;
        }
        self.last_pct = pct;
        let el = self.start.elapsed().as_secs_f64();
        let per = el / done.max(1) as f64;
        let eta = per * (total - done) as f64;
        let width = 30;
        let done = done.min(total);
        let fill = done * width / total.max(1);
        let line = format!(
            "{} [{}{}] {done}/{total} {:.0} ms/step, ETA {:.0} s",
            self.label,
            "#".repeat(fill),
            ".".repeat(width - fill),
            per * 1e3,
            eta
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r{line}\x1b[K");
            if done == total {
                let _ = writeln!(err);
            }
        } else {
            let _ = writeln!(err, "{line}");
        }
    }

    pub fn seconds(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}
