//! Progress bars for transfers: shown on a terminal, silent otherwise.

use std::io::IsTerminal;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sotto_client::Progress;

/// A bar (hidden when stderr is not a terminal).
pub struct Bar(ProgressBar);

/// A bar for a transfer named `what`.
pub fn bar(what: &str) -> Bar {
    let pb = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_owned());
    Bar(pb)
}

impl Bar {
    /// The callback transfers report to.
    pub fn callback(&self) -> Progress {
        let pb = self.0.clone();
        Arc::new(move |done, total| {
            pb.set_length(total);
            pb.set_position(done);
        })
    }

    /// Ends the bar.
    pub fn finish(&self, ok: bool) {
        if ok {
            self.0.finish();
        } else {
            self.0.abandon();
        }
    }
}
