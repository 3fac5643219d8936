//! Progress of long operator work (a replay of thousands): a bar on a terminal, plain lines
//! otherwise (a log file or a CI job should not fill with carriage returns).

use std::io::IsTerminal;

/// Where progress goes.
#[derive(Debug)]
pub(crate) enum Progress {
    /// An animated bar on stderr.
    Bar(indicatif::ProgressBar),
    /// A line on stderr about every tenth of the way.
    Lines {
        /// What is being done ("replayed").
        verb: &'static str,
        total: u64,
        done: u64,
        last_reported: u64,
    },
    /// Nothing (small jobs, or JSON output where stderr should stay quiet).
    Silent,
}

/// Below this many items no progress is shown: it would flash by.
const SHOW_FROM: u64 = 50;

impl Progress {
    /// Progress towards `total`, shown as fits stderr.
    pub(crate) fn start(verb: &'static str, total: u64) -> Progress {
        if total < SHOW_FROM {
            return Progress::Silent;
        }
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total);
            let style = indicatif::ProgressStyle::with_template(&format!(
                "{{bar:40}} {{pos}}/{{len}} {verb} ({{per_sec}}, {{eta}} left)"
            ))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            Progress::Bar(bar)
        } else {
            eprintln!("{verb} 0 of {total}");
            Progress::Lines {
                verb,
                total,
                done: 0,
                last_reported: 0,
            }
        }
    }

    /// `count` more are done.
    pub(crate) fn advance(&mut self, count: u64) {
        match self {
            Progress::Bar(bar) => bar.inc(count),
            Progress::Lines {
                verb,
                total,
                done,
                last_reported,
            } => {
                *done += count;
                let step = (*total / 10).max(1);
                if *done >= *last_reported + step || *done == *total {
                    eprintln!("{verb} {done} of {total}");
                    *last_reported = *done;
                }
            }
            Progress::Silent => {}
        }
    }

    /// The work ended (completely or not).
    pub(crate) fn finish(self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
