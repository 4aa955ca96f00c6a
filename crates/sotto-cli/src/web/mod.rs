//! `sotto web`: a local web UI. The page is served on 127.0.0.1 only, and
//! every request must carry the random access token from the printed URL
//! (then kept in a same-site cookie). Keys and all cryptography stay in
//! this process: it reuses the chat screen's network task and state, and
//! the browser only renders plaintext it gets over loopback.
//!
//! The API is the front-end contract (`crate::frontend`) as JSON: a POST
//! to `/api/action` is a [`Command`] and answers with its own [`Outcome`];
//! `/api/events` streams every [`Event`], each message carried whole so the
//! page updates it in place. docs/frontend-events.md has the details.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use sotto_core::Messenger;
use tokio::sync::{broadcast, mpsc, watch};

use crate::frontend::json::event_json;
use crate::frontend::model::Model;
use crate::frontend::{Command, Event, Outcome, Request};

const INDEX: &str = include_str!("../../../../web/index.html");
const SCRIPT: &str = include_str!("../../../../web/app.js");
const STYLE: &str = include_str!("../../../../web/style.css");

struct Shared {
    token: String,
    /// What the page shows, kept by the same events it gets.
    model: Mutex<Model>,
    commands: mpsc::UnboundedSender<Request>,
    /// Ids for the requests this page makes.
    next_request: std::sync::atomic::AtomicU64,
    events: broadcast::Sender<Value>,
    downloads: Mutex<Option<PathBuf>>,
    /// Where uploaded bytes wait until they are encrypted (in the profile).
    outgoing: Mutex<Option<PathBuf>>,
    profiles: Vec<(String, String)>,
    /// A requested switch: profile name and, for a locked one, its passphrase.
    switch: Mutex<Option<(String, Option<String>)>>,
    /// Ends the current network run (for a switch).
    stop_net: Mutex<Option<watch::Sender<bool>>>,
}

fn message_json(m: &sotto_core::StoredMessage) -> Value {
    crate::frontend::json::message_json(m)
}

impl Shared {
    /// Hands a command to the driver and waits for its outcome.
    async fn ask(&self, command: Command) -> (u64, Outcome) {
        let id = self.next_request.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let (request, reply) = Request::with_reply(id, command);
        if self.commands.send(request).is_err() {
            return (id, Outcome::Error { message: "sotto web is shutting down".into() });
        }
        let outcome = reply.await.unwrap_or_else(|_| Outcome::Error {
            message:
                "the connection to the server was reset while doing that; look at the conversation before trying again"
                    .into(),
        });
        (id, outcome)
    }
}

/// A command's answer: its id and outcome; an error outcome is a 422 so a
/// script can tell it from success without reading it.
fn outcome_response(id: u64, outcome: &Outcome) -> Response {
    let status =
        if matches!(outcome, Outcome::Error { .. }) { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let mut body = json!({"request": id, "outcome": outcome});
    if let Outcome::SafetyNumber { number, .. } = outcome {
        // The digits as a QR code, for the verification screen.
        body["outcome"]["qr"] = json!(link::qr_svg(&number.replace(' ', "")));
    }
    (status, Json(body)).into_response()
}

fn authorized(shared: &Shared, headers: &HeaderMap, query_token: Option<&str>) -> bool {
    let from_header = headers.get("x-sotto-token").and_then(|v| v.to_str().ok());
    let from_cookie = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').find_map(|p| p.trim().strip_prefix("sotto_token=")));
    [query_token, from_header, from_cookie]
        .into_iter()
        .flatten()
        .any(|t| constant_time_eq(t.as_bytes(), shared.token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn refuse() -> Response {
    (StatusCode::FORBIDDEN, "this page needs the access token from the URL that `sotto web` printed\n").into_response()
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn index(State(s): State<Arc<Shared>>, Query(q): Query<TokenQuery>, headers: HeaderMap) -> Response {
    if !authorized(&s, &headers, q.token.as_deref()) {
        return refuse();
    }
    let mut r = (StatusCode::OK, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response();
    let cookie = format!("sotto_token={}; HttpOnly; SameSite=Strict; Path=/", s.token);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    secure_headers(&mut r);
    r
}

/// No framing by other pages, no inline script, nothing from elsewhere.
fn secure_headers(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
}

fn asset(s: &Shared, headers: &HeaderMap, q: &TokenQuery, body: &'static str, kind: &'static str) -> Response {
    if !authorized(s, headers, q.token.as_deref()) {
        return refuse();
    }
    let mut r = (StatusCode::OK, [(header::CONTENT_TYPE, kind)], body).into_response();
    secure_headers(&mut r);
    r
}

async fn script(State(s): State<Arc<Shared>>, Query(q): Query<TokenQuery>, headers: HeaderMap) -> Response {
    asset(&s, &headers, &q, SCRIPT, "text/javascript; charset=utf-8")
}

async fn style(State(s): State<Arc<Shared>>, Query(q): Query<TokenQuery>, headers: HeaderMap) -> Response {
    asset(&s, &headers, &q, STYLE, "text/css; charset=utf-8")
}

macro_rules! guard {
    ($s:expr, $headers:expr, $q:expr) => {
        if !authorized(&$s, &$headers, $q) {
            return refuse();
        }
    };
}

// After `guard!`, which it uses.
mod files;
mod link;

use files::{download, thumbnail, upload};

async fn state(State(s): State<Arc<Shared>>, headers: HeaderMap, Query(q): Query<TokenQuery>) -> Response {
    guard!(s, headers, q.token.as_deref());
    let app = s.model.lock().unwrap_or_else(|p| p.into_inner());
    // Most recent activity first, each with its last message for the list.
    let mut list: Vec<&crate::frontend::model::Conversation> =
        app.order.iter().filter_map(|n| app.conversations.get(n)).collect();
    list.sort_by_key(|c| std::cmp::Reverse(c.messages.last().map(|m| m.sent_at.max(m.received_at)).unwrap_or(0)));
    let conversations: Vec<Value> = list
        .into_iter()
        .map(|c| {
            let last = c.messages.iter().rev().find(|m| !m.detail.annotation).map(|m| {
                let text = if m.detail.deleted {
                    crate::output::DELETED.to_owned()
                } else {
                    crate::output::text_of(&m.body).chars().take(120).collect()
                };
                json!({"from": m.sender, "text": text, "sent_at": m.sent_at, "kind": crate::output::kind_of(m)})
            });
            json!({
                "name": c.name, "unread": c.unread, "online": c.online, "count": c.messages.len(), "last": last,
                "muted": c.muted, "classical": c.classical,
            })
        })
        .collect();
    // What this person wrote that waits to be sent (shown while offline).
    let waiting: Vec<String> = app
        .conversations
        .values()
        .flat_map(|c| c.messages.iter())
        .filter(|m| m.outgoing && m.state == sotto_core::MessageState::Pending && !m.detail.annotation)
        .map(|m| hex::encode(&m.id))
        .collect();
    let profiles: Vec<Value> = s.profiles.iter().map(|(n, d)| json!({"name": n, "detail": d})).collect();
    // People's names and pictures, as the `profile` event carries them.
    let mut people: Vec<Value> = app
        .avatars
        .iter()
        .filter(|(k, _)| k.starts_with('#'))
        .map(|(conversation, picture)| {
            crate::frontend::json::event_json(&crate::frontend::Event::GroupPicture {
                conversation: conversation.clone(),
                picture: Some(picture.clone()),
            })
        })
        .collect();
    people.extend(app.names.iter().map(|(handle, name)| {
        let avatar = app.avatars.get(handle).cloned();
        crate::frontend::json::event_json(&crate::frontend::Event::Profile {
            handle: handle.clone(),
            name: name.clone(),
            avatar,
        })
    }));
    Json(json!({
        "me": app.me, "server": app.server,
        "link": app.link.clone().unwrap_or(crate::frontend::Link::Connecting),
        "conversations": conversations, "profiles": profiles, "people": people, "info": app.info,
        "notices": app.notices, "preferences": app.preferences, "waiting": waiting,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct ConvQuery {
    c: String,
    token: Option<String>,
    /// Only messages older than this one (hex id): the page before.
    before: Option<String>,
    /// How many at most (default and cap: [`HISTORY_PAGE`]).
    limit: Option<usize>,
}

/// Messages per page of history: a conversation of 10,000 messages opens
/// as fast as one of 200; older pages load as the reader scrolls up.
const HISTORY_PAGE: usize = 200;

async fn history(State(s): State<Arc<Shared>>, headers: HeaderMap, Query(q): Query<ConvQuery>) -> Response {
    guard!(s, headers, q.token.as_deref());
    let mut app = s.model.lock().unwrap_or_else(|p| p.into_inner());
    if app.conversations.contains_key(&q.c) {
        app.open(&q.c);
    }
    let limit = q.limit.unwrap_or(HISTORY_PAGE).clamp(1, HISTORY_PAGE);
    let Some(c) = app.conversations.get(&q.c) else {
        return Json(json!({"conversation": q.c, "messages": [], "timer": 0, "description": "", "more": false}))
            .into_response();
    };
    let end = match q.before.as_deref().map(hex::decode) {
        None => c.messages.len(),
        Some(Ok(id)) => match c.messages.iter().position(|m| m.id == id) {
            Some(i) => i,
            None => return (StatusCode::NOT_FOUND, "that message is not in this conversation").into_response(),
        },
        Some(Err(_)) => return (StatusCode::BAD_REQUEST, "before: a message id in hex").into_response(),
    };
    let start = end.saturating_sub(limit);
    let list: Vec<Value> = c.messages[start..end].iter().map(message_json).collect();
    Json(json!({
        "conversation": q.c, "messages": list, "timer": c.timer, "description": c.description, "more": start > 0,
    }))
    .into_response()
}

/// A switch to another profile: handled here, not by the driver (it ends
/// the driver's run).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Switch {
    profile: String,
    #[serde(default)]
    passphrase: String,
}

async fn act(State(s): State<Arc<Shared>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    guard!(s, headers, None);
    if body["type"] == "switch" {
        let mut body = body;
        if let Some(o) = body.as_object_mut() {
            o.remove("type");
        }
        let Ok(sw) = serde_json::from_value::<Switch>(body) else {
            return (StatusCode::BAD_REQUEST, Json(json!({"error": "a switch needs a profile"}))).into_response();
        };
        if !s.profiles.iter().any(|(n, _)| *n == sw.profile) {
            return (StatusCode::BAD_REQUEST, Json(json!({"error": "no such profile"}))).into_response();
        }
        let pass = if sw.passphrase.is_empty() { None } else { Some(sw.passphrase) };
        *s.switch.lock().unwrap_or_else(|p| p.into_inner()) = Some((sw.profile, pass));
        if let Some(stop) = s.stop_net.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = stop.send(true);
        }
        return Json(json!({"ok": true})).into_response();
    }
    let command = match serde_json::from_value::<Command>(body) {
        Ok(c) => c,
        Err(e) => {
            let error = format!("not a command this page can give: {e}");
            return (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response();
        }
    };
    if let Err(e) = command.validate() {
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": e }))).into_response();
    }
    let (id, outcome) = s.ask(command).await;
    outcome_response(id, &outcome)
}

#[derive(Deserialize)]
struct ExportQuery {
    c: String,
}

async fn export(State(s): State<Arc<Shared>>, headers: HeaderMap, Query(q): Query<ExportQuery>) -> Response {
    guard!(s, headers, None);
    let (me, messages) = {
        let app = s.model.lock().unwrap_or_else(|p| p.into_inner());
        (app.me.clone(), app.conversations.get(&q.c).map(|c| c.messages.clone()).unwrap_or_default())
    };
    let html = crate::export::render(&q.c, &me, &messages, crate::export::Format::Html);
    let name = crate::export::file_name(&q.c, crate::export::Format::Html);
    let mut r = (StatusCode::OK, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

async fn event_stream(State(s): State<Arc<Shared>>, headers: HeaderMap, Query(q): Query<TokenQuery>) -> Response {
    guard!(s, headers, q.token.as_deref());
    let rx = s.events.subscribe();
    let stream =
        tokio_stream_from(rx).map(|v| Ok::<_, std::convert::Infallible>(SseEvent::default().data(v.to_string())));
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

fn tokio_stream_from(rx: broadcast::Receiver<Value>) -> impl futures_util::Stream<Item = Value> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(v) => return Some((v, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// Opens another profile for a switch.
fn open_profile(name: &str, passphrase: Option<String>) -> Result<Messenger> {
    let dir = crate::profile::resolve(Some(name))?;
    let key = if sotto_core::db::uses_key_file(&dir) {
        sotto_core::ProfileKey::KeyFile
    } else {
        let p = passphrase
            .or_else(|| std::env::var("SOTTO_PASSPHRASE").ok())
            .context("this profile needs its passphrase")?;
        sotto_core::ProfileKey::Passphrase(p.into())
    };
    Ok(Messenger::open(&dir, &key)?)
}

/// Serves the UI until Ctrl-C.
pub async fn run(first: std::rc::Rc<Messenger>, port: u16, open: bool, profiles: Vec<(String, String)>) -> Result<()> {
    // Plaintext staged by a web UI that crashed or was killed mid-send.
    first.clear_outgoing();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.context("cannot listen on 127.0.0.1")?;
    let addr = listener.local_addr()?;
    let token = hex::encode(rand::random::<[u8; 24]>());
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Event>();
    let (events, _) = broadcast::channel(1024);
    let shared = Arc::new(Shared {
        token: token.clone(),
        model: Mutex::new(Model::default()),
        commands: cmd_tx,
        next_request: Default::default(),
        events: events.clone(),
        downloads: Mutex::new(first.downloads_dir()),
        outgoing: Mutex::new(first.outgoing_dir()),
        profiles,
        switch: Mutex::new(None),
        stop_net: Mutex::new(None),
    });
    let app = Router::new()
        .route("/", get(index))
        .route("/app.js", get(script))
        .route("/style.css", get(style))
        .route("/api/state", get(state))
        .route("/api/history", get(history))
        .route("/api/action", post(act))
        .route("/api/upload", post(upload))
        .route("/api/link", post(link::link))
        .route("/api/download", get(download))
        .route("/api/thumbnail", get(thumbnail))
        .route("/api/export", get(export))
        .route("/api/events", get(event_stream))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(shared.clone());
    let url = format!("http://{addr}/?token={token}");
    println!("url: {url}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    if open {
        for opener in ["xdg-open", "open"] {
            if std::process::Command::new(opener)
                .arg(&url)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .is_ok()
            {
                break;
            }
        }
    }
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    // Mirror what the network reports into the shared state and to pages.
    let mirror_shared = shared.clone();
    let mirror = async move {
        while let Some(ev) = ev_rx.recv().await {
            let v = event_json(&ev);
            mirror_shared.model.lock().unwrap_or_else(|p| p.into_inner()).apply(ev);
            let _ = mirror_shared.events.send(v);
        }
    };
    let exiting = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_shared = shared.clone();
    let stop_flag = exiting.clone();
    let stop = async move {
        #[cfg(unix)]
        {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal");
            tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        stop_flag.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(s) = stop_shared.stop_net.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = s.send(true);
        }
    };
    let runs = async {
        let mut messenger = first;
        loop {
            let (quit_tx, quit_rx) = watch::channel(false);
            *shared.stop_net.lock().unwrap_or_else(|p| p.into_inner()) = Some(quit_tx);
            crate::frontend::driver::run(&messenger, &mut cmd_rx, ev_tx.clone(), quit_rx).await;
            if exiting.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let Some((name, pass)) = shared.switch.lock().unwrap_or_else(|p| p.into_inner()).take() else { return };
            match open_profile(&name, pass) {
                Ok(m) => {
                    messenger = std::rc::Rc::new(m);
                    *shared.model.lock().unwrap_or_else(|p| p.into_inner()) = Model::default();
                    *shared.downloads.lock().unwrap_or_else(|p| p.into_inner()) = messenger.downloads_dir();
                    messenger.clear_outgoing();
                    *shared.outgoing.lock().unwrap_or_else(|p| p.into_inner()) = messenger.outgoing_dir();
                    let _ = shared.events.send(json!({"type": "switched", "profile": name}));
                }
                Err(e) => {
                    let _ =
                        shared.events.send(json!({"type": "notice", "conversation": null, "text": format!("cannot switch to {name}: {e:#}")}));
                }
            }
        }
    };
    tokio::select! {
        _ = async { tokio::join!(runs, stop) } => {}
        _ = mirror => {}
    }
    server.abort();
    Ok(())
}
