//! The new device's side of linking, from the page: this browser's sotto
//! becomes another device of an account. The page asks for a new profile
//! (`POST /api/link`), shows the QR code and the code it gets back, and
//! waits; the account's first device runs `sotto device add CODE` (or its
//! own page's Devices panel). Once answered, the profile is made and the
//! page switches to it, and the history the other device hands over is
//! taken in there.

#[allow(unused_imports)]
use super::*;
use std::time::Duration;

use sotto_client::devices::wait_for_link;
use sotto_core::link::LinkRequest;
use sotto_proto::ServerAddress;

/// How long a code from the page waits for its answer.
const LINK_WAIT: Duration = Duration::from_secs(600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LinkForm {
    /// The new profile's name.
    profile: String,
    /// The account's server address.
    server: String,
    /// The name of this device.
    name: String,
    /// A passphrase for the new profile (empty: a key file beside it).
    #[serde(default)]
    passphrase: String,
}

/// The code as an SVG QR code, drawn by the `qrcode` crate (no script).
pub(super) fn qr_svg(code: &str) -> String {
    match qrcode::QrCode::new(code.as_bytes()) {
        Ok(q) => q.render::<qrcode::render::svg::Color>().min_dimensions(200, 200).quiet_zone(true).build(),
        Err(_) => String::new(),
    }
}

pub(super) async fn link(State(s): State<Arc<Shared>>, headers: HeaderMap, Json(form): Json<LinkForm>) -> Response {
    guard!(s, headers, None);
    let fail = |text: String| (StatusCode::BAD_REQUEST, Json(json!({ "error": text }))).into_response();
    let address = match ServerAddress::parse(form.server.trim()) {
        Ok(a) => a,
        Err(e) => {
            return fail(format!("that is not a server address ({e}); it is the sotto://… line the server printed"))
        }
    };
    let dir = match crate::profile::resolve(Some(form.profile.trim())) {
        Ok(d) => d,
        Err(e) => return fail(format!("{e:#}")),
    };
    if sotto_core::db::exists(&dir) {
        return fail(format!("a profile named {} exists already; choose another name", form.profile.trim()));
    }
    let request = match LinkRequest::new(&form.name) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    let code = request.code();
    let (profile, pass) = (form.profile.trim().to_owned(), form.passphrase);
    let shared = s.clone();
    tokio::spawn(async move {
        let notice = |text: String| {
            let _ = shared.events.send(json!({"type": "link_failed", "text": text}));
        };
        let answer = match wait_for_link(&address, request, LINK_WAIT).await {
            Ok(Some(a)) => a,
            Ok(None) => return notice("no device linked this one within 10 minutes; ask for a new code".into()),
            Err(e) => return notice(format!("linking stopped: {e}")),
        };
        let (identity, mut handover) = answer;
        handover.server = address.to_string();
        let handle = identity.handle.clone();
        let key = if pass.is_empty() {
            sotto_core::ProfileKey::KeyFile
        } else {
            sotto_core::ProfileKey::Passphrase(pass.clone().into())
        };
        let made = Messenger::create_linked(&dir, &key, identity, &handover);
        if let Err(e) = made {
            return notice(format!("linked, but the profile could not be made: {e}"));
        }
        let _ = shared.events.send(json!({"type": "linked", "profile": profile, "handle": handle}));
        // The profile is ready: the page moves to it; its first connection
        // uploads its keys, so the other device can add it everywhere.
        *shared.switch.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((profile, if pass.is_empty() { None } else { Some(pass) }));
        if let Some(stop) = shared.stop_net.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = stop.send(true);
        }
    });
    Json(json!({ "code": code, "qr": qr_svg(&code) })).into_response()
}
