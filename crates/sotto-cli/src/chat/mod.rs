//! `sotto chat`: the terminal UI. State in `app.rs` (events in, state
//! out), drawing in `ui.rs` (a pure function of the state), the network in
//! the front-end driver (`crate::frontend`), shared with `sotto web`. The
//! terminal is restored on exit, on panic and on signals.

mod actions;
pub mod app;
mod attention;
mod search;
pub mod ui;

use anyhow::Result;
use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures_util::StreamExt;
use sotto_core::Messenger;
use tokio::sync::{mpsc, watch};

use app::App;

/// Runs the chat screen until the person quits (`None`) or switches to
/// another profile (`Some(name)`; the caller opens it and runs again, with
/// the terminal restored in between so a passphrase can be asked).
pub async fn run(messenger: &Messenger, profiles: Vec<(String, String)>) -> Result<Option<String>> {
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let (quit_tx, quit_rx) = watch::channel(false);
    // ratatui::init enters raw mode and the alternate screen and installs a
    // panic hook that restores the terminal before the panic is printed.
    let mut terminal = ratatui::init();
    let ui = async {
        let mut app = App { profiles, ..App::default() };
        let mut next_request = 0u64;
        let mut keys = EventStream::new();
        #[cfg(unix)]
        let mut term_sig = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        loop {
            terminal.draw(|f| ui::draw(f, &app))?;
            #[cfg(unix)]
            let signal = async {
                tokio::select! { _ = term_sig.recv() => {}, _ = hup.recv() => {} }
            };
            #[cfg(not(unix))]
            let signal = std::future::pending::<()>();
            tokio::select! {
                k = keys.next() => match k {
                    Some(Ok(TermEvent::Key(key))) if key.kind != KeyEventKind::Release => {
                        if let Some(command) = app.on_key(key) {
                            next_request += 1;
                            let _ = cmd_tx.send(crate::frontend::Request::new(next_request, command));
                        }
                        // Switching conversations may have shown unread ones.
                        app.note_read();
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => app.quit = true,
                },
                Some(ev) = ev_rx.recv() => {
                    app.on_net(ev);
                    // Take everything queued before redrawing.
                    while let Ok(ev) = ev_rx.try_recv() {
                        app.on_net(ev);
                    }
                    app.ring(&mut std::io::stdout());
                }
                _ = signal => app.quit = true,
            }
            for command in app.take_queued() {
                next_request += 1;
                let _ = cmd_tx.send(crate::frontend::Request::new(next_request, command));
            }
            if app.quit {
                return Ok::<_, anyhow::Error>(app.switch_to.take());
            }
        }
    };
    // Whatever ends the screen (quit or error) also stops the network side.
    let ui = async {
        let r = ui.await;
        let _ = quit_tx.send(true);
        r
    };
    let net = crate::frontend::driver::run(messenger, &mut cmd_rx, ev_tx, quit_rx);
    let (ui_result, ()) = tokio::join!(ui, net);
    ratatui::restore();
    ui_result
}
