//! Terminal output: tracing set-up (text or JSON on stderr) and indicatif
//! progress bars that never interleave with log lines.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::{GlobalArgs, LogFormat, ProgressMode};
use crate::report::Reporter;
use crate::transform::engine::FileProgress;

static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// Stderr writer that hides the bars while a log line is printed.
pub struct SuspendingStderr {
    buf: Vec<u8>,
}

impl Write for SuspendingStderr {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SuspendingStderr {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let print = || {
            let _ = std::io::stderr().lock().write_all(&buf);
        };
        match BARS.get() {
            Some(mp) => mp.suspend(print),
            None => print(),
        }
    }
}

/// Sets up logging per the global flags. `-v` debug, `-vv` trace,
/// `--quiet` errors only; `RUST_LOG` overrides.
pub fn init_logging(g: &GlobalArgs) {
    let level = if g.quiet {
        "error"
    } else {
        match g.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("piigate={level},warn")));
    let make = || SuspendingStderr { buf: Vec::with_capacity(256) };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(make).with_target(false);
    let _ = match g.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => {
            // Human lines carry the message only; the structured fields go to JSON.
            let message_only = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
                if field.name() == "message" {
                    write!(w, "{value:?}")
                } else {
                    Ok(())
                }
            });
            builder.without_time().with_ansi(std::io::stderr().is_terminal()).fmt_fields(message_only).try_init()
        }
    };
}

/// Whether to draw bars.
pub fn bars_enabled(g: &GlobalArgs) -> bool {
    !g.quiet
        && match g.progress {
            ProgressMode::Always => true,
            ProgressMode::Never => false,
            ProgressMode::Auto => std::io::stderr().is_terminal(),
        }
}

/// indicatif implementation of [`Reporter`].
pub struct BarReporter {
    mp: &'static MultiProgress,
}

impl BarReporter {
    /// A reporter drawing on stderr.
    pub fn new() -> Self {
        let mp = BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self { mp }
    }
}

struct Bar(ProgressBar);

impl FileProgress for Bar {
    fn update(&self, bytes: u64, rows: u64) {
        self.0.set_position(bytes);
        self.0.set_message(format!("{rows} rows"));
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

impl Reporter for BarReporter {
    fn file_started(&self, name: &str, total: Option<u64>) -> Box<dyn FileProgress + '_> {
        let pb = self.mp.add(ProgressBar::new(total.unwrap_or(0)));
        let style = ProgressStyle::with_template(
            "{prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg} ({eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        pb.set_style(style);
        // The file name is not PII; values never reach a bar.
        pb.set_prefix(name.to_owned());
        Box::new(Bar(pb))
    }
}
