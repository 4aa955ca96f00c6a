// sotto web: renders what the local sotto process sends. Every piece of
// text from a message goes through textContent, never innerHTML, so nothing
// a sender writes can run in this page.
'use strict';

const $ = (id) => document.getElementById(id);
let current = null;
let state = { conversations: [] };

async function api(path, options = {}) {
  const r = await fetch(path, { credentials: 'same-origin', ...options });
  const json = r.headers.get('content-type')?.includes('json');
  if (!r.ok) {
    const body = json ? await r.json() : { error: await r.text() };
    throw new Error(body.outcome ? body.outcome.message : body.error);
  }
  return json ? r.json() : r.text();
}

// A command of the front-end contract (docs/frontend-events.md); resolves
// with its outcome, rejects with the error a person should read.
function command(cmd) {
  return api('/api/action', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(cmd) });
}

// The outcome of a command in words (the same words as the terminal UI).
function describe(o) {
  switch (o.outcome) {
    case 'sent': return `sent to ${o.conversation}`;
    case 'queued': return `${o.conversation}: not sent yet; the message is saved and goes out when the connection returns`;
    case 'file_sent': return `sent ${o.name} to ${o.conversation}`;
    case 'saved': return `saved ${o.path}`;
    case 'broadcast': return `broadcast to ${o.count} contacts`;
    case 'group_changed': return `${o.change} ${o.conversation}: done`;
    case 'safety_number': return `safety number with @${o.handle}: ${o.number}`;
    case 'exported': return `exported to ${o.path}`;
    case 'presence': return 'contacts refreshed';
    case 'devices': return 'your devices: ' + o.devices.map(describeDevice).join('; ');
    case 'device_linked': return o.complete
      ? `linked device ${o.id} ("${o.name}"); it is in every conversation`
      : `linked device ${o.id} ("${o.name}"); it joins your conversations once it has come online and this device reconnects`;
    case 'device_removed': return `removed device ${o.id}: taken out of ${o.conversations} conversation(s); it can no longer log in or read what is sent`;
    case 'requests': return o.requests.length ? `message requests: ${o.requests.length}` : 'no message requests';
    case 'request_accepted': return `accepted ${o.conversation}`;
    case 'request_declined': return `declined ${o.conversation}; its messages are deleted`;
    case 'verified': return `@${o.handle} is verified: the safety numbers match`;
    case 'trusted': return o.changed ? `accepted @${o.handle}'s new key; compare safety numbers again` : `@${o.handle}'s key has not changed; nothing to accept`;
    case 'members': return `${o.conversation}: ` + o.members.map((m) => `@${m.handle}${m.me ? ' (you)' : ''}${m.admin ? ' (admin)' : ''}`).join(', ');
    case 'found': return o.hits.length ? `${o.hits.length} found for "${o.query}"` : `nothing found for "${o.query}"`;
    case 'changed':
      if (o.change === 'delete_for_me') return 'deleted from this device';
      if (o.change === 'read_receipts') return 'read receipts changed';
      if (o.change === 'describe') return `${o.conversation}: description set`;
      return o.change === 'timer' ? `${o.conversation}: disappearing-message timer set` : '';
    case 'signalled': return '';
    case 'error': return `error: ${o.message}`;
    default: return '';
  }
}

function describeDevice(d) {
  const name = d.name ? `"${d.name}"` : '(unnamed)';
  if (d.this) return `${d.id} ${name} (this device)`;
  const seen = d.last_seen > 0 ? new Date(d.last_seen).toISOString().replace(/\.\d+Z$/, 'Z') : 'never';
  return `${d.id} ${name} (last seen ${seen})`;
}

function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// --- themes -----------------------------------------------------------
const media = window.matchMedia('(prefers-color-scheme: dark)');
function applyTheme() {
  const chosen = localStorage.getItem('sotto-theme') || 'system';
  $('theme').value = chosen;
  const theme = chosen === 'system' ? (media.matches ? 'dark' : 'light') : chosen;
  document.documentElement.setAttribute('data-theme', theme);
}
$('theme').addEventListener('change', (e) => {
  localStorage.setItem('sotto-theme', e.target.value);
  applyTheme();
});
media.addEventListener('change', applyTheme);
applyTheme();

// --- conversations ----------------------------------------------------
// A time for the list: the hour today, the weekday this week, else the date.
function shortTime(ms) {
  const d = new Date(ms);
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (now - d < 6 * 86400000) return d.toLocaleDateString([], { weekday: 'short' });
  return d.toLocaleDateString([], { day: 'numeric', month: 'short' });
}

function renderConversations() {
  const ul = $('conversations');
  ul.replaceChildren();
  for (const c of state.conversations) {
    const li = el('li');
    const b = el('button', { type: 'button', 'data-name': c.name, class: 'conv' });
    if (c.name === current) b.setAttribute('aria-current', 'true');
    const top = el('span', { class: 'conv-top' });
    if (c.name.startsWith('@')) {
      const dot = el('span', { class: c.online ? 'dot on' : 'dot', 'aria-label': c.online ? 'online' : 'offline', role: 'img' });
      top.append(dot);
    }
    const who = people.get(c.name.startsWith('@') ? c.name.slice(1) : c.name);
    if (who && who.avatar) top.append(el('img', { class: 'avatar', src: who.avatar, alt: '' }));
    top.append(el('span', { class: 'conv-name' }, c.name));
    if (who && who.display_name) top.append(el('span', { class: 'display-name' }, ` ${who.display_name}`));
    if (muted.has(c.name)) top.append(el('span', { class: 'muted-mark', 'aria-label': 'muted', role: 'img' }, ' 🔕'));
    if (classical.has(c.name)) {
      top.append(el('span', { class: 'classical-mark', title: 'Not post-quantum: someone here uses an app without it. Still end-to-end encrypted.' }, 'not PQ'));
    }
    if (c.last) top.append(el('span', { class: 'conv-time' }, shortTime(c.last.sent_at)));
    b.append(top);
    const bottom = el('span', { class: 'conv-bottom' });
    if (c.last) {
      const from = c.last.kind === 'system' ? '' : c.last.from === state.me ? 'you: ' : c.name.startsWith('#') ? `${c.last.from}: ` : '';
      const text = c.last.kind === 'file' ? `📎 ${c.last.text}` : c.last.text;
      bottom.append(el('span', { class: 'preview' }, `${from}${text}`));
    }
    if (c.unread > 0 && c.name !== current) bottom.append(el('span', { class: 'badge', 'aria-label': `${c.unread} unread` }, String(c.unread)));
    b.append(bottom);
    b.addEventListener('click', () => open(c.name));
    li.append(b);
    ul.append(li);
  }
  showUnreadTotal();
  const profiles = $('profiles');
  profiles.replaceChildren(...(state.profiles || []).map((p) => {
    const li = el('li', {}, `${p.name}: ${p.detail} `);
    const b = el('button', { type: 'button', class: 'switch', 'data-profile': p.name }, 'Switch');
    b.addEventListener('click', () => {
      const text = $('profile-pass').value;
      $('profile-pass').value = '';
      command({ type: 'switch', profile: p.name, passphrase: text }).catch(showError);
    });
    li.append(b);
    return li;
  }));
}

// What this person wrote that waits to be sent, by message id.
const waiting = new Set();
let lastLink = null;
function showLink(link) {
  lastLink = link;
  $('link').textContent = link.state === 'online' ? 'online' : link.state === 'reconnecting' ? 'reconnecting…' : 'connecting…';
  // Offline said plainly, with what waits, and gone by itself when the
  // connection is back.
  const banner = $('banner');
  if (link.state === 'reconnecting') {
    const n = waiting.size;
    const what = n === 0 ? 'What you send waits' : n === 1 ? '1 message waits' : `${n} messages wait`;
    banner.textContent = `Offline: ${link.reason}. ${what} on this computer and ${n === 1 ? 'goes' : 'go'} when the connection returns.`;
    banner.hidden = false;
  } else {
    banner.hidden = true;
    // Only a line about the connection itself goes: a message not sent
    // (its text back in the box) stays until its own timer.
    if (link.state === 'online' && /^error: (?!not sent).*(connect|server|connection)/.test($('info').textContent)) $('info').textContent = '';
  }
}

// --- attention ----------------------------------------------------------
// Muted conversations: no notification, no count in the tab title. Kept
// in the encrypted profile (a list of whom someone talks to stays out of
// the browser's storage); every front end hears of a change.
const muted = new Set();
// Conversations on classical (not post-quantum) encryption.
const classical = new Set();
function showMuted(conversation, on) {
  if (on) muted.add(conversation); else muted.delete(conversation);
  if (conversation === current) {
    $('mute').setAttribute('aria-pressed', String(on));
    $('mute').textContent = on ? 'Unmute' : 'Mute';
  }
  renderConversations();
}
$('mute').addEventListener('click', () => {
  if (!current) return;
  command({ type: 'mute', conversation: current, muted: !muted.has(current) }).catch(showError);
});

function showUnreadTotal() {
  const total = state.conversations.filter((c) => !muted.has(c.name) && c.name !== current).reduce((n, c) => n + (c.unread || 0), 0);
  document.title = total ? `(${total}) sotto` : 'sotto';
}

// What this person chose on this device (drafts, the notification switch,
// recent emoji): kept in the encrypted profile by sotto, never in the
// browser's storage, so they survive a reload and another browser.
let prefs = {};
function setPref(name, value) {
  if ((prefs[name] || '') === value) return;
  if (value) prefs[name] = value; else delete prefs[name];
  command({ type: 'preference', name, value }).catch(showError);
}

// Browser notifications while the page is hidden: asked for when the
// person ticks the box (a browser asks only after a click), off when
// unticked. The choice is kept; the browser's permission is its own.
let notifyOn = false;
function applyNotifyPref() {
  notifyOn = prefs.notify === 'on' && 'Notification' in window && Notification.permission === 'granted';
  $('notify').checked = notifyOn;
}
$('notify').addEventListener('change', async () => {
  if (!$('notify').checked) { notifyOn = false; setPref('notify', 'off'); return; }
  if (!('Notification' in window)) { $('info').textContent = 'this browser cannot show notifications'; $('notify').checked = false; return; }
  const answer = Notification.permission === 'granted' ? 'granted' : await Notification.requestPermission();
  notifyOn = answer === 'granted';
  $('notify').checked = notifyOn;
  setPref('notify', notifyOn ? 'on' : 'off');
  if (!notifyOn) $('info').textContent = 'notifications are blocked for this page in the browser\'s settings';
});
function notify(m) {
  if (!notifyOn || !document.hidden || muted.has(m.conversation) || m.kind === 'system') return;
  const body = m.kind === 'file' ? `📎 ${m.file.name}` : m.text;
  const n = new Notification(m.conversation.startsWith('#') ? `${m.from} in ${m.conversation}` : m.from, { body: body.slice(0, 200), tag: m.conversation });
  n.onclick = () => { window.focus(); open(m.conversation).catch(showError); n.close(); };
}

// Ctrl-K: jump to any conversation by typing part of its name.
function jumpMatches() {
  const q = $('jump-text').value.trim().toLowerCase();
  return state.conversations.filter((c) => c.name.toLowerCase().includes(q)).slice(0, 8);
}
function renderJump() {
  $('jump-list').replaceChildren(...jumpMatches().map((c, i) => {
    const b = el('button', { type: 'button', class: i === 0 ? 'jump-hit first' : 'jump-hit' }, c.name);
    b.addEventListener('click', () => { $('jump').close(); open(c.name).catch(showError); });
    const li = el('li');
    li.append(b);
    return li;
  }));
}
document.addEventListener('keydown', (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 'k') {
    e.preventDefault();
    $('jump-text').value = '';
    renderJump();
    $('jump').showModal();
    $('jump-text').focus();
  }
});
$('jump-text').addEventListener('input', renderJump);
$('jump-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const hit = jumpMatches()[0];
  $('jump').close();
  if (hit) open(hit.name).catch(showError);
});

// Narrow screens show one pane at a time: the list, or a conversation
// with a back button.
$('back').addEventListener('click', () => {
  document.body.classList.remove('in-chat');
  if (current) saveDraft(current, $('text').value);
});

// The whole state: only on start and after a profile switch; everything
// else arrives as events.
// People's names and pictures, as they shared them (end to end).
const people = new Map();
function notePerson(p) {
  // A person by handle; a group's picture by its name.
  if (p.type === 'group_picture') people.set(p.conversation, { avatar: p.avatar });
  else people.set(p.handle, p);
}

// Set once the first state arrived: until then events do not open a
// conversation by themselves (the list's most recent one opens).
let loaded = false;
async function refresh() {
  state = await api('/api/state');
  loaded = true;
  prefs = { ...(state.preferences || {}) };
  waiting.clear();
  for (const id of state.waiting || []) waiting.add(id);
  applyNotifyPref();
  recentEmoji.splice(0, recentEmoji.length, ...(prefs['emoji.recent'] || '').split(' ').filter(Boolean));
  notices = state.notices || [];
  renderNotices();
  muted.clear();
  for (const c of state.conversations) if (c.muted) muted.add(c.name);
  classical.clear();
  for (const c of state.conversations) if (c.classical) classical.add(c.name);
  for (const p of state.people || []) notePerson(p);
  $('me').textContent = `@${state.me}`;
  showLink(state.link);
  if (!current && state.conversations.length) await open(state.conversations[0].name, false);
  renderConversations();
}

function dayLabel(d) {
  return d.toLocaleDateString(undefined, { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });
}

// The text a message shows, for quotes.
function shownText(m) {
  if (m.deleted) return 'message deleted';
  if (m.kind === 'file') return `File: ${m.file ? m.file.name : ''}`;
  return m.text;
}

// Where an own message stands: ✓ the server has it, ✓✓ every device of
// the others has it, then read (by whom, in groups).
function receiptMark(m) {
  if (m.state === 'pending') return ' · sending…';
  if (m.state === 'not_sent') return ' · not sent';
  if (m.state === 'read') {
    const by = m.receipt && current && current.startsWith('#') ? ` by ${m.receipt.read_by.join(', ')}` : '';
    return ` · ✓✓ read${by}`;
  }
  if (m.state === 'delivered') return ' · ✓✓';
  if (m.state === 'sent') return ' · ✓';
  return '';
}

const QUICK_REACTIONS = ['👍', '❤️', '😂', '😮', '😢', '🎉'];
// While a whole page of messages is made at once: its messages by id.
let batch = null;

// A message's formatting (bold, italic, code, quotes, lists, links), as
// the tree sotto parsed it into: elements from a fixed list and text
// nodes, never HTML.
const FORMAT_TAGS = { p: 'p', b: 'strong', i: 'em', s: 's', quote: 'blockquote', ul: 'ul', ol: 'ol', li: 'li' };
function formattedNode(n) {
  if (typeof n === 'string') return linked(n);
  if (n.k === 'br') return el('br');
  if (n.k === 'code') return el('code', {}, n.t);
  if (n.k === 'pre') return el('pre', {}, n.t);
  let node;
  if (n.k === 'a') {
    let href = null;
    try { const u = new URL(n.href); if (u.protocol === 'https:' || u.protocol === 'http:') href = u.href; } catch { /* not a link */ }
    node = href ? el('a', { href, rel: 'noopener noreferrer', target: '_blank' }) : el('span');
  } else {
    node = el(FORMAT_TAGS[n.k] || 'span');
  }
  for (const c of n.c || []) node.append(n.k === 'a' && typeof c === 'string' ? document.createTextNode(c) : formattedNode(c));
  return node;
}

// Sizes as people read them.
function humanSize(n) {
  if (n < 1024) return `${n} bytes`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u += 1; }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

// A text with its web addresses as links: built from text nodes and <a>
// elements (never HTML), only http and https, opened on a click alone in
// a new tab that cannot reach back to this page.
function linked(text) {
  const out = document.createDocumentFragment();
  const re = /\bhttps?:\/\/[^\s<>"]+/g;
  let at = 0;
  for (const match of text.matchAll(re)) {
    let url = match[0].replace(/[.,;:!?)\]}'"]+$/, '');
    let href;
    try { href = new URL(url).href; } catch { continue; }
    out.append(document.createTextNode(text.slice(at, match.index)));
    out.append(el('a', { href, rel: 'noopener noreferrer', target: '_blank' }, url));
    at = match.index + url.length;
  }
  out.append(document.createTextNode(text.slice(at)));
  return out;
}

function messageItem(m) {
  if (m.kind === 'system') return el('li', { class: 'system', 'data-id': m.id }, m.text);
  const mentioned = !m.outgoing && m.mentions && m.mentions.includes(state.me);
  const li = el('li', { class: `${m.outgoing ? 'out' : 'in'}${mentioned ? ' mention' : ''}`, 'data-id': m.id, tabindex: '-1' });
  const when = new Date(m.sent_at);
  const edited = m.edited && !m.deleted ? ' · edited' : '';
  const timer = (m.expires_at ? ' · ⏱' : '') + (m.pinned ? ' · 📌 pinned' : '');
  const mark = m.outgoing ? receiptMark(m) : '';
  const meta = el('div', { class: 'meta' });
  meta.append(el('span', { class: 'from' }, `${m.from} · `), `${when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}${edited}${timer}${mark}`);
  li.append(meta);
  if (m.reply_to) {
    const q = document.querySelector(`#messages li[data-id="${CSS.escape(m.reply_to)}"]`);
    const quoted = (batch && batch.get(m.reply_to)) || (q && q.sottoJson ? JSON.parse(q.sottoJson) : null);
    const quote = el('blockquote', { class: 'quote' }, quoted ? `${quoted.from}: ${shownText(quoted)}` : 'an earlier message');
    li.append(quote);
  }
  if (m.deleted) {
    li.append(el('p', { class: 'body deleted' }, 'message deleted'));
  } else if (m.kind === 'file' && m.file.thumbnail) {
    // The preview came inside the message; the whole picture is fetched
    // only when asked for.
    const t = m.file.thumbnail;
    const img = el('img', { src: `/api/thumbnail?id=${encodeURIComponent(m.file.id)}`, width: String(t.width), height: String(t.height), alt: `picture: ${m.file.name}` });
    const open = el('button', { type: 'button', class: 'picture', 'aria-label': `Open ${m.file.name} (${humanSize(m.file.size)})` });
    open.append(img);
    open.addEventListener('click', () => openPicture(m.file));
    li.append(open);
    if (m.text) li.append(el('p', { class: 'body' }, m.text));
  } else if (m.kind === 'file') {
    const p = el('p', { class: 'body' }, `📎 ${m.file.name} (${humanSize(m.file.size)})`);
    li.append(p);
    if (m.text) li.append(el('p', { class: 'body' }, m.text));
    if (!m.outgoing) {
      const a = el('a', { href: `/api/download?id=${encodeURIComponent(m.file.id)}`, class: 'download', download: m.file.name }, 'Download');
      li.append(a);
    }
  } else if (m.formatted) {
    const body = el('div', { class: 'body formatted' });
    for (const n of m.formatted) body.append(formattedNode(n));
    li.append(body);
  } else {
    const body = el('p', { class: 'body' });
    body.append(linked(m.text));
    li.append(body);
  }
  if (m.reactions && m.reactions.length) {
    const row = el('div', { class: 'reactions' });
    for (const r of m.reactions) {
      const mine = r.by.includes(state.me);
      const b = el('button', { type: 'button', class: mine ? 'reaction mine' : 'reaction', 'aria-pressed': String(mine), title: r.by.join(', '), 'aria-label': `${r.emoji} ${r.count}: ${r.by.join(', ')}` }, `${r.emoji} ${r.count}`);
      b.addEventListener('click', () => command({ type: 'react', id: m.id, emoji: r.emoji, remove: mine }).catch(showError));
      row.append(b);
    }
    li.append(row);
  }
  if (m.outgoing && m.state === 'not_sent' && m.kind === 'text' && !m.deleted) {
    // Not sent, and sotto will not try again by itself: the text stays
    // here and one click sends it again.
    const again = el('button', { type: 'button', class: 'retry' }, 'Retry');
    again.addEventListener('click', () => {
      again.disabled = true;
      command({ type: 'retry', id: m.id }).catch((e) => { again.disabled = false; showError(e); });
    });
    const row = el('div', { class: 'failed', role: 'group', 'aria-label': 'Not sent' });
    row.append(el('span', {}, 'Not sent. '), again);
    li.append(row);
  }
  if (!m.deleted && m.state !== 'pending') li.append(messageActions(m));
  return li;
}

// Reply, react, edit, delete: a small toolbar on each message.
function messageActions(m) {
  const bar = el('div', { class: 'actions' });
  const button = (label, text, fn) => {
    const b = el('button', { type: 'button', 'aria-label': label }, text);
    b.addEventListener('click', () => fn(b));
    bar.append(b);
  };
  button('Reply', 'Reply', () => startReply(m));
  button('React', '☺︎', (b) => showPicker(m, b));
  button(m.pinned ? 'Unpin' : 'Pin', m.pinned ? 'Unpin' : 'Pin', () => command({ type: 'pin', id: m.id, pinned: !m.pinned }).catch(showError));
  if (m.outgoing && m.kind === 'text') button('Edit', 'Edit', () => startEdit(m));
  if (m.outgoing) {
    button('Delete for everyone', 'Delete', () => confirmDelete(m, bar));
  }
  button('Delete for me', 'Hide', () => command({ type: 'delete', id: m.id, for_me: true }).catch(showError));
  return bar;
}

// Asks in place before a delete for everyone (no browser dialog).
function confirmDelete(m, bar) {
  const ask = el('div', { class: 'confirm', role: 'group', 'aria-label': 'Confirm delete' });
  ask.append(el('span', {}, 'Delete for everyone? They will see "message deleted". '));
  const yes = el('button', { type: 'button' }, 'Delete for everyone');
  const no = el('button', { type: 'button' }, 'Keep');
  yes.addEventListener('click', () => { ask.remove(); command({ type: 'delete', id: m.id }).catch(showError); });
  no.addEventListener('click', () => { ask.replaceWith(bar); });
  ask.append(yes, ' ', no);
  bar.replaceWith(ask);
  no.focus();
}

// Emoji to choose from, with words to find them by. A short list of the
// ones people use most; any other can be typed or pasted.
const EMOJI = [
  ['👍', 'thumbs up yes ok like'], ['👎', 'thumbs down no dislike'], ['❤️', 'heart love red'], ['😂', 'laugh tears joy lol'],
  ['😮', 'wow surprised open mouth'], ['😢', 'sad cry tear'], ['🎉', 'party tada celebrate congratulations'], ['🙏', 'thanks please pray'],
  ['😀', 'grin smile happy'], ['😃', 'smile happy joy'], ['😄', 'smile laugh'], ['😁', 'grin beam'], ['😅', 'sweat relief laugh'],
  ['🤣', 'rofl rolling laugh'], ['🙂', 'slight smile'], ['🙃', 'upside down silly'], ['😉', 'wink'], ['😊', 'blush smile'],
  ['😇', 'angel innocent halo'], ['🥰', 'love hearts adore'], ['😍', 'heart eyes love'], ['🤩', 'star struck excited'],
  ['😘', 'kiss'], ['😋', 'yum tasty'], ['😛', 'tongue'], ['😜', 'wink tongue crazy'], ['🤪', 'zany crazy'], ['🤔', 'thinking hmm'],
  ['🤨', 'raised eyebrow skeptical'], ['😐', 'neutral meh'], ['😑', 'expressionless'], ['😶', 'speechless no mouth'],
  ['🙄', 'eye roll'], ['😏', 'smirk'], ['😬', 'grimace awkward'], ['😌', 'relieved calm'], ['😔', 'pensive sad'],
  ['😪', 'sleepy'], ['😴', 'sleep zzz tired'], ['😷', 'mask sick'], ['🤒', 'ill fever sick'], ['🤯', 'mind blown exploding'],
  ['🥳', 'party celebrate birthday'], ['😎', 'cool sunglasses'], ['🤓', 'nerd geek'], ['😕', 'confused'], ['😟', 'worried'],
  ['😲', 'astonished shocked'], ['😳', 'flushed embarrassed'], ['🥺', 'pleading puppy eyes'], ['😭', 'sob crying'],
  ['😱', 'scream fear'], ['😤', 'triumph huff'], ['😡', 'angry rage'], ['🤬', 'swearing cursing'], ['😈', 'devil evil'],
  ['💀', 'skull dead'], ['💩', 'poop'], ['🤡', 'clown'], ['👻', 'ghost boo'], ['👽', 'alien'], ['🤖', 'robot'],
  ['👋', 'wave hello bye'], ['👌', 'ok perfect'], ['✌️', 'peace victory'], ['🤞', 'fingers crossed luck'], ['👏', 'clap applause'],
  ['🙌', 'raise hands hooray'], ['🤝', 'handshake deal'], ['💪', 'strong muscle flex'], ['👀', 'eyes look see'],
  ['🧡', 'orange heart'], ['💛', 'yellow heart'], ['💚', 'green heart'], ['💙', 'blue heart'], ['💜', 'purple heart'],
  ['🖤', 'black heart'], ['💔', 'broken heart'], ['💯', 'hundred perfect'], ['🔥', 'fire hot lit'], ['✨', 'sparkles shiny'],
  ['⭐', 'star'], ['🌟', 'glowing star'], ['⚡', 'lightning zap'], ['💥', 'boom collision'], ['💤', 'sleep zzz'],
  ['✅', 'check done yes'], ['❌', 'cross no wrong'], ['❓', 'question'], ['❗', 'exclamation important'], ['⚠️', 'warning'],
  ['🚀', 'rocket launch ship'], ['🎂', 'birthday cake'], ['🎁', 'gift present'], ['🍕', 'pizza food'], ['🍔', 'burger food'],
  ['🍺', 'beer drink'], ['🍷', 'wine drink'], ['☕', 'coffee tea'], ['🍰', 'cake dessert'], ['🍎', 'apple fruit'],
  ['🌈', 'rainbow'], ['☀️', 'sun sunny'], ['🌧️', 'rain'], ['❄️', 'snow cold'], ['🌍', 'earth world globe'],
  ['🐶', 'dog puppy'], ['🐱', 'cat kitten'], ['🦊', 'fox'], ['🐻', 'bear'], ['🐼', 'panda'], ['🦄', 'unicorn'],
  ['⚽', 'football soccer'], ['🏀', 'basketball'], ['🎮', 'game controller'], ['🎵', 'music note'], ['📷', 'camera photo'],
  ['💻', 'laptop computer'], ['📱', 'phone mobile'], ['📎', 'paperclip attachment'], ['📌', 'pin'], ['🔒', 'lock secure private'],
  ['🔑', 'key'], ['💡', 'idea bulb'], ['📅', 'calendar date'], ['⏰', 'alarm clock time'], ['🏠', 'home house'],
  ['🚗', 'car drive'], ['✈️', 'plane travel flight'], ['🏖️', 'beach holiday vacation'], ['🎄', 'christmas tree'],
];
// Recently chosen first; kept in the profile.
const recentEmoji = [];

// A picker: recent ones, then all, narrowed by what is typed; `pick` gets
// the emoji (Enter takes the first shown, or what was typed when nothing
// matches, so any emoji can be used).
function emojiPicker(pick, label) {
  const box = el('div', { class: 'picker', role: 'group', 'aria-label': label });
  const find = el('input', { type: 'search', 'aria-label': 'Search emoji', placeholder: 'search or type any', size: '14' });
  const grid = el('div', { class: 'emoji-grid' });
  const choose = (e) => {
    box.remove();
    recentEmoji.splice(0, recentEmoji.length, e, ...recentEmoji.filter((x) => x !== e).slice(0, 11));
    setPref('emoji.recent', recentEmoji.join(' '));
    pick(e);
  };
  const show = () => {
    const q = find.value.trim().toLowerCase();
    const seen = new Set();
    const list = [...recentEmoji.map((e) => [e, '']), ...QUICK_REACTIONS.map((e) => [e, '']), ...EMOJI]
      .filter(([e, words]) => {
        if (seen.has(e)) return false;
        const all = EMOJI.find((x) => x[0] === e);
        const ok = !q || (words || (all ? all[1] : '')).includes(q) || (all && all[1].includes(q));
        if (ok) seen.add(e);
        return ok;
      })
      .slice(0, 40);
    grid.replaceChildren(...list.map(([e]) => {
      const b = el('button', { type: 'button', 'aria-label': `${e} ${(EMOJI.find((x) => x[0] === e) || ['', ''])[1].split(' ')[0]}` }, e);
      b.addEventListener('click', () => choose(e));
      return b;
    }));
  };
  find.addEventListener('input', show);
  find.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') { ev.preventDefault(); box.remove(); }
    if (ev.key === 'Enter') {
      ev.preventDefault();
      const first = grid.querySelector('button');
      if (first) choose(first.textContent);
      else if (find.value.trim()) choose(find.value.trim());
    }
  });
  box.append(find, grid);
  show();
  return box;
}

function showPicker(m, anchor) {
  document.querySelectorAll('.picker').forEach((p) => p.remove());
  const picker = emojiPicker((e) => command({ type: 'react', id: m.id, emoji: e }).catch(showError), 'Pick a reaction');
  anchor.parentElement.after(picker);
  picker.querySelector('button').focus();
}

// What the composer does next: a plain message, a reply, or an edit.
let composing = null;

function showComposing() {
  const box = $('composing');
  if (!composing) { box.hidden = true; $('composing-text').textContent = ''; return; }
  box.hidden = false;
  $('composing-text').textContent = composing.kind === 'edit'
    ? 'Editing your message (Esc cancels)'
    : `Replying to ${composing.message.from}: ${shownText(composing.message).slice(0, 80)}`;
}

function startReply(m) { composing = { kind: 'reply', message: m }; showComposing(); $('text').focus(); }

function startEdit(m) {
  composing = { kind: 'edit', message: m };
  $('text').value = m.text;
  showComposing();
  $('text').focus();
}

function cancelComposing() {
  if (composing && composing.kind === 'edit') $('text').value = '';
  composing = null;
  showComposing();
}

// Whether the reader is at the newest message (then new ones scroll into
// view; otherwise the reader's place is kept).
function atBottom(ol) {
  return ol.scrollHeight - ol.scrollTop - ol.clientHeight < 40;
}

function dayOf(li) { return li.dataset.day; }

// A message right after another from the same person (within five
// minutes) joins it: no name again, less space between.
function groupWith(prev, li, m) {
  const p = prev && prev.sottoJson ? JSON.parse(prev.sottoJson) : null;
  if (p && p.kind !== 'system' && m.kind !== 'system' && p.from === m.from
    && Date.parse(m.sent_at) - Date.parse(p.sent_at) < 5 * 60000) li.classList.add('cont');
}

// Puts one message into the open conversation: replaces the element with
// its id, or appends it (with a day separator when the day changes).
// Nothing else on the page is touched, so the reader keeps their place.
function upsertMessage(m) {
  const ol = $('messages');
  const follow = atBottom(ol);
  const json = JSON.stringify(m);
  const li = messageItem(m);
  li.sottoJson = json;
  li.dataset.day = dayLabel(new Date(m.sent_at));
  const existing = ol.querySelector(`li[data-id="${CSS.escape(m.id)}"]`);
  if (existing) {
    if (existing.sottoJson !== json) {
      existing.replaceWith(li);
      // Replies quoting it show the new text (or that it was deleted).
      for (const r of ol.querySelectorAll('li[data-id]')) {
        const rm = r.sottoJson ? JSON.parse(r.sottoJson) : null;
        if (rm && rm.reply_to === m.id) {
          const again = messageItem(rm);
          again.sottoJson = r.sottoJson;
          again.dataset.day = r.dataset.day;
          r.replaceWith(again);
        }
      }
    }
  } else {
    const last = [...ol.querySelectorAll('li[data-id]')].pop();
    if (!last || dayOf(last) !== li.dataset.day) ol.append(el('li', { class: 'day' }, li.dataset.day));
    else if (ol.lastElementChild === last) groupWith(last, li, m);
    ol.append(li);
  }
  if (follow) ol.scrollTop = ol.scrollHeight;
}

// An older page above what is shown, keeping the reader's place.
// A page of messages made off the page, with a day line where the day
// changes and consecutive messages grouped; replies find what they quote
// among the messages being made. Returns it and the last day in it.
function pageFragment(list) {
  const frag = document.createDocumentFragment();
  let day = null;
  batch = new Map(list.map((m) => [m.id, m]));
  for (const m of list) {
    const li = messageItem(m);
    li.sottoJson = JSON.stringify(m);
    li.dataset.day = dayLabel(new Date(m.sent_at));
    if (li.dataset.day !== day) { frag.append(el('li', { class: 'day' }, li.dataset.day)); day = li.dataset.day; }
    else groupWith(frag.lastElementChild, li, m);
    frag.append(li);
  }
  batch = null;
  return { frag, day };
}

function prependMessages(list) {
  const ol = $('messages');
  const before = ol.scrollHeight - ol.scrollTop;
  const firstShown = ol.querySelector('li');
  const { frag, day } = pageFragment(list.filter((m) => !ol.querySelector(`li[data-id="${CSS.escape(m.id)}"]`)));
  // The day line that opened the shown part goes if the page ends that day.
  if (firstShown && firstShown.classList.contains('day') && firstShown.textContent === day) firstShown.remove();
  ol.prepend(frag);
  ol.scrollTop = ol.scrollHeight - before;
}

// A whole history: messages already shown and unchanged stay the same
// elements; only new or changed ones are made.
function renderMessages(list, fresh) {
  const ol = $('messages');
  if (fresh) {
    // Opening: every element made off the page and put in at once, one
    // layout instead of one per message.
    ol.replaceChildren(pageFragment(list).frag);
    ol.scrollTop = ol.scrollHeight;
    return;
  }
  // A whole history arrives after some changes: only the part shown (the
  // pages loaded so far) is brought up to date.
  const first = ol.querySelector('li[data-id]');
  const at = first ? list.findIndex((m) => m.id === first.dataset.id) : -1;
  list = at >= 0 ? list.slice(at) : list.slice(-200);
  const wanted = new Set(list.map((m) => m.id));
  for (const li of [...ol.querySelectorAll('li[data-id]')]) if (!wanted.has(li.dataset.id)) li.remove();
  for (const m of list) upsertMessage(m);
}

function conversationEntry(name) {
  let c = state.conversations.find((x) => x.name === name);
  if (!c) {
    c = { name, unread: 0, online: false };
    state.conversations.unshift(c);
  }
  return c;
}

// While a conversation's history is being fetched, what events say about
// it waits here and is applied after the fetched list (which may be older
// than them), so a message that arrives meanwhile is never wiped.
let arrivedWhileOpening = null;

function applyToOpen(fn) {
  if (arrivedWhileOpening) arrivedWhileOpening.push(fn);
  else fn();
}

// Drafts per conversation, kept in the encrypted profile (saved a moment
// after typing stops, and when leaving the conversation).
const draftOf = (name) => prefs[`draft.${name}`] || '';
let draftTimer = null;
function saveDraft(name, text) {
  clearTimeout(draftTimer);
  setPref(`draft.${name}`, text.trim() ? text : '');
}
$('text').addEventListener('input', () => {
  clearTimeout(draftTimer);
  const name = current;
  if (name) draftTimer = setTimeout(() => saveDraft(name, $('text').value), 800);
});
// Whether older messages of the open conversation are still to load.
let moreHistory = false;

// `show`: on a narrow screen, switch from the list to the conversation
// (not when the page opens the most recent one by itself).
async function open(name, show = true) {
  if (current && current !== name) saveDraft(current, $('text').value);
  const unreadBefore = state.conversations.find((x) => x.name === name)?.unread || 0;
  current = name;
  if (show) document.body.classList.add('in-chat');
  $('title').textContent = name;
  $('text').value = draftOf(name);
  grow();
  $('mute').setAttribute('aria-pressed', String(muted.has(name)));
  $('mute').textContent = muted.has(name) ? 'Unmute' : 'Mute';
  $('export').setAttribute('href', `/api/export?c=${encodeURIComponent(name)}`);
  $('messages').replaceChildren();
  $('to-new').hidden = true;
  const waiting = [];
  arrivedWhileOpening = waiting;
  let h;
  try {
    h = await api(`/api/history?c=${encodeURIComponent(name)}`);
  } finally {
    if (arrivedWhileOpening === waiting) arrivedWhileOpening = null;
  }
  if (current !== name) return;
  moreHistory = h.more;
  renderMessages(h.messages, true);
  markNew(unreadBefore);
  showTimer(h.timer || 0);
  $('description').textContent = h.description || '';
  cancelComposing();
  renderTyping();
  markRead();
  for (const fn of waiting) fn();
  const c = state.conversations.find((x) => x.name === name);
  if (c) c.unread = 0;
  renderConversations();
  $('text').focus();
}

// The "new messages" line above the first unread one, and a button to
// it when it is out of sight, also when it is on a page not loaded yet
// (more unread than a page holds): the button fetches pages up to it.
let unreadAtOpen = 0;
function markNew(unread) {
  unreadAtOpen = unread;
  $('to-new').textContent = '↑ new messages';
  if (!unread) return;
  const incoming = [...document.querySelectorAll('#messages li.in[data-id]')];
  if (incoming.length < unread && moreHistory) {
    $('to-new').textContent = `↑ ${unread} new messages`;
    $('to-new').hidden = false;
    return;
  }
  placeNewLine(incoming, unread);
  const line = $('new-line');
  if (line && line.offsetTop < $('messages').scrollTop) $('to-new').hidden = false;
}
function placeNewLine(incoming, unread) {
  const first = incoming[Math.max(0, incoming.length - unread)];
  if (!first || $('new-line')) return;
  first.before(el('li', { class: 'new-line', id: 'new-line' }, 'new messages'));
}
$('to-new').addEventListener('click', async () => {
  const name = current;
  $('to-new').disabled = true;
  try {
    const count = () => document.querySelectorAll('#messages li.in[data-id]').length;
    while (!$('new-line') && moreHistory && count() < unreadAtOpen && current === name) await loadOlder();
  } catch (e) {
    showError(e);
  } finally {
    $('to-new').disabled = false;
  }
  if (current !== name) return;
  placeNewLine([...document.querySelectorAll('#messages li.in[data-id]')], unreadAtOpen);
  $('new-line')?.scrollIntoView({ block: 'start' });
  $('to-new').hidden = true;
});

// Older pages of history as the reader scrolls up: the reader stays on
// the message they were reading.
let loadingOlder = false;
async function loadOlder() {
  const first = $('messages').querySelector('li[data-id]');
  // A page already on its way: wait for it (a caller looping on this
  // must not spin).
  if (loadingOlder) return new Promise((r) => setTimeout(r, 50));
  if (!first || !moreHistory || !current) return;
  loadingOlder = true;
  const name = current;
  try {
    const h = await api(`/api/history?c=${encodeURIComponent(name)}&before=${encodeURIComponent(first.dataset.id)}`);
    if (current !== name) return;
    moreHistory = h.more;
    prependMessages(h.messages);
  } finally {
    loadingOlder = false;
  }
}
$('messages').addEventListener('scroll', () => {
  const ol = $('messages');
  if (!$('to-new').hidden && $('new-line') && $('new-line').offsetTop >= ol.scrollTop) $('to-new').hidden = true;
  if (ol.scrollTop > 300) return;
  loadOlder().catch(showError);
});

// --- sending ----------------------------------------------------------
async function send() {
  const text = $('text').value;
  if (!current || !text.trim()) return;
  const to = current;
  $('text').value = '';
  saveDraft(to, '');
  grow();
  const how = composing;
  composing = null;
  showComposing();
  lastTyping = 0;
  try {
    if (how && how.kind === 'edit') await command({ type: 'edit', id: how.message.id, text });
    else if (how && how.kind === 'reply') await command({ type: 'reply', to, text, reply_to: how.message.id });
    else await command({ type: 'send', to, text });
  } catch (e) {
    // Not sent and not kept: the text goes back in the box to try again.
    if (current === to && !$('text').value) {
      $('text').value = text;
      grow();
      composing = how;
      showComposing();
    } else saveDraft(to, text);
    // A conversation that never started (nobody by that name) leaves
    // nothing in the list.
    const c = state.conversations.find((x) => x.name === to);
    if (c && !c.last && !document.querySelector('#messages li[data-id]')) {
      state.conversations = state.conversations.filter((x) => x !== c);
      renderConversations();
    }
    throw new Error(`not sent: ${e.message} (your text is back in the box: press Enter to try again)`);
  }
}

// The message box grows with its text, up to a third of the screen.
function grow() {
  const t = $('text');
  t.style.height = 'auto';
  t.style.height = `${Math.min(t.scrollHeight + 2, Math.floor(window.innerHeight / 3))}px`;
}
$('text').addEventListener('input', grow);

// The newest own text in the open conversation (↑ edits it).
function lastOwnText() {
  const items = [...document.querySelectorAll('#messages li.out[data-id]')].reverse();
  for (const li of items) {
    const m = li.sottoJson ? JSON.parse(li.sottoJson) : null;
    if (m && m.kind === 'text' && !m.deleted && m.state !== 'pending') return m;
  }
  return null;
}

// Typing: the others who are online see it; told at most every 4 s.
let lastTyping = 0;
$('text').addEventListener('input', () => {
  if (!current || Date.now() - lastTyping < 4000 || !$('text').value.trim()) return;
  lastTyping = Date.now();
  command({ type: 'typing', conversation: current }).catch(() => {});
});

// Who is typing where, until when.
const typing = new Map();
function renderTyping() {
  const now = Date.now();
  const who = [...typing.entries()].filter(([k, until]) => until > now && k.startsWith(`${current}\n`)).map(([k]) => k.split('\n')[1]);
  $('typing').textContent = who.length ? `${who.join(', ')} ${who.length === 1 ? 'is' : 'are'} typing…` : '';
}
setInterval(renderTyping, 1000);

// The open conversation counts as read while the page is visible.
let readPending = false;
function markRead() {
  if (!current || document.hidden || readPending) return;
  readPending = true;
  setTimeout(() => {
    readPending = false;
    if (current && !document.hidden) command({ type: 'read', conversation: current }).catch(() => {});
  }, 300);
}
document.addEventListener('visibilitychange', markRead);

function showTimer(secs) {
  const words = { 0: 'off', 300: '5 minutes', 3600: '1 hour', 86400: '1 day', 604800: '1 week', 2419200: '4 weeks' };
  $('timer').value = String(secs);
  if (![...$('timer').options].some((o) => o.value === String(secs))) {
    $('timer').append(el('option', { value: String(secs) }, words[secs] || `${secs} seconds`));
    $('timer').value = String(secs);
  }
  $('timer-label').textContent = secs ? '⏱' : '';
}
$('timer').addEventListener('change', () => {
  if (!current) return;
  command({ type: 'timer', conversation: current, secs: Number($('timer').value) }).catch(showError);
});
$('composer').addEventListener('submit', (e) => { e.preventDefault(); send().catch(showError); });
$('text').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); send().catch(showError); }
  if (e.key === 'Escape' && composing) { e.preventDefault(); cancelComposing(); }
  if (e.key === 'ArrowUp' && !$('text').value) {
    const m = lastOwnText();
    if (m) { e.preventDefault(); startEdit(m); }
  }
});
$('composing-cancel').addEventListener('click', cancelComposing);

// The composer's emoji button: the choice goes in where the cursor was.
$('emoji').addEventListener('click', () => {
  const open = document.querySelector('#composer-picker .picker');
  if (open) { open.remove(); return; }
  const t = $('text');
  const [from, to] = [t.selectionStart, t.selectionEnd];
  const picker = emojiPicker((e) => {
    t.setRangeText(e, from, to, 'end');
    grow();
    t.focus();
  }, 'Insert an emoji');
  $('composer-picker').append(picker);
  picker.querySelector('input').focus();
});

// An image pasted into the message box is sent like a chosen file.
$('text').addEventListener('paste', (e) => {
  const files = [...(e.clipboardData?.files || [])];
  if (!files.length) return;
  e.preventDefault();
  for (const f of files) sendFile(f.name && f.name !== 'image.png' ? f : new File([f], `pasted-${Date.now()}.${(f.type.split('/')[1] || 'bin')}`, { type: f.type })).catch(showError);
});

async function sendFile(file) {
  if (!current) { $('info').textContent = 'open a conversation first'; return; }
  $('progress').textContent = `uploading ${file.name}…`;
  await api(`/api/upload?to=${encodeURIComponent(current)}&name=${encodeURIComponent(file.name)}`, { method: 'POST', body: file });
}
$('file').addEventListener('change', (e) => {
  for (const f of e.target.files) sendFile(f).catch(showError);
  e.target.value = '';
});
const chat = $('chat');
chat.addEventListener('dragover', (e) => { e.preventDefault(); chat.classList.add('dragging'); });
chat.addEventListener('dragleave', () => chat.classList.remove('dragging'));
chat.addEventListener('drop', (e) => {
  e.preventDefault();
  chat.classList.remove('dragging');
  for (const f of e.dataTransfer.files) sendFile(f).catch(showError);
});

$('new-chat').addEventListener('submit', (e) => {
  e.preventDefault();
  const to = $('new-to').value.trim();
  if (!/^[@#][A-Za-z0-9_.-]+$/.test(to)) { $('info').textContent = 'write @handle or #group'; return; }
  $('new-to').value = '';
  if (!state.conversations.find((c) => c.name === to)) state.conversations.unshift({ name: to, unread: 0, online: false });
  open(to).catch(showError);
});

$('group-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const action = $('group-action').value;
  const name = $('group-name').value.trim().replace(/^#/, '');
  const people = $('group-people').value.split(/\s+/).filter(Boolean).map((h) => h.replace(/^@/, ''));
  if (action === 'describe') {
    command({ type: 'describe', conversation: `#${name}`, text: $('group-people').value }).catch(showError);
    return;
  }
  const cmd = action === 'leave' ? { type: 'group', action, name }
    : action === 'rename' ? { type: 'group', action, name, to: (people[0] || '').replace(/^#/, '') }
    : { type: 'group', action, name, people };
  command(cmd).catch(showError);
});

$('broadcast-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('broadcast-text').value;
  $('broadcast-text').value = '';
  command({ type: 'broadcast', text }).catch(showError);
});

$('safety').addEventListener('click', () => {
  if (!current || !current.startsWith('@')) { $('info').textContent = 'safety numbers are per person: open a one-to-one chat'; return; }
  openVerify(current).catch(showError);
});

// --- operator notices -------------------------------------------------------
// Shown apart from every conversation and plainly marked: the server's
// operator wrote them, and they are not end-to-end encrypted. The newest
// one not dismissed stays at the top until dismissed (on any device that
// shares this profile's preferences).
let notices = [];
function noticeTime(n) {
  return new Date(n.sent_at).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}
function renderNotices() {
  $('notices').replaceChildren(...(notices.length ? [...notices].reverse().map((n) => {
    const li = el('li');
    li.append(el('time', { datetime: new Date(n.sent_at).toISOString() }, noticeTime(n)), el('p', { class: 'notice-text' }, n.text));
    return li;
  }) : [el('li', { class: 'muted' }, 'No notices.')]));
  const seen = Number(prefs['notices.seen'] || 0);
  const newest = notices[notices.length - 1];
  const show = newest && newest.id > seen;
  $('operator-notice').hidden = !show;
  if (show) $('operator-notice-text').textContent = `${noticeTime(newest)}: ${newest.text}`;
}
$('operator-notice-dismiss').addEventListener('click', () => {
  const newest = notices[notices.length - 1];
  if (newest) setPref('notices.seen', String(newest.id));
  renderNotices();
});

// --- verification ---------------------------------------------------------
// The safety number in twelve blocks of five digits (as Signal shows it),
// its QR code, and the one action that fits the contact's state: mark as
// verified, or, while their key changed, accept the new key after comparing.
async function openVerify(conversation) {
  const handle = conversation.slice(1);
  const r = await command({ type: 'verify', handle });
  const o = r.outcome;
  $('verify-title').textContent = `Safety number with @${o.handle}`;
  const blocks = $('verify-blocks');
  blocks.replaceChildren(...o.number.split(' ').map((b) => el('span', { class: 'block' }, b)));
  $('verify-qr').src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(o.qr || '');
  $('verify-hold').hidden = !o.key_changed;
  $('verify-hold-text').textContent = `@${o.handle}'s key changed: a new phone or a reinstall, or someone in between. `
    + `Messages with @${o.handle} wait until you accept the new key. Compare the number above with @${o.handle} first.`;
  $('verify-mark').hidden = o.key_changed || o.verified;
  $('verify-state').textContent = o.key_changed ? 'not verified: the key changed'
    : o.verified ? `✓ @${o.handle} is verified` : `@${o.handle} is not verified yet`;
  $('verify').dataset.handle = o.handle;
  $('verify').dataset.number = o.number;
  if (!$('verify').open) $('verify').showModal();
}

$('verify-mark').addEventListener('click', () => {
  const d = $('verify');
  command({ type: 'confirm', handle: d.dataset.handle, digits: d.dataset.number })
    .then(() => openVerify(`@${d.dataset.handle}`))
    .catch((e) => { $('verify-state').textContent = `error: ${e.message}`; });
});
$('verify-accept').addEventListener('click', () => {
  const d = $('verify');
  command({ type: 'trust', handle: d.dataset.handle })
    .then(() => openVerify(`@${d.dataset.handle}`))
    .catch((e) => { $('verify-state').textContent = `error: ${e.message}`; });
});
$('verify-close').addEventListener('click', () => $('verify').close());

// --- pictures -------------------------------------------------------------
function openPicture(file) {
  $('viewer-img').src = `/api/download?view=1&id=${encodeURIComponent(file.id)}`;
  $('viewer-img').alt = file.name;
  $('viewer-name').textContent = `${file.name} (${humanSize(file.size)})`;
  $('viewer-save').href = `/api/download?id=${encodeURIComponent(file.id)}`;
  $('viewer-save').setAttribute('download', file.name);
  $('viewer').showModal();
}
$('viewer-img').addEventListener('error', () => {
  if ($('viewer').open && $('viewer-img').getAttribute('src')) {
    $('viewer-name').textContent = 'the picture could not be fetched; try again when the connection is back';
  }
});
$('viewer-close').addEventListener('click', () => $('viewer').close());
$('viewer').addEventListener('close', () => $('viewer-img').removeAttribute('src'));

// A line about what just happened; it goes by itself after a while, so an
// old error does not stay after things recovered.
let infoTimer = null;
function showError(e) { $('info').textContent = `error: ${e.message}`; }
new MutationObserver(() => {
  clearTimeout(infoTimer);
  if ($('info').textContent) infoTimer = setTimeout(() => { $('info').textContent = ''; }, 15000);
}).observe($('info'), { childList: true, characterData: true, subtree: true });

// --- devices ----------------------------------------------------------
function renderDevices(list) {
  const ul = $('devices');
  ul.replaceChildren();
  for (const d of list) {
    const li = el('li', { 'data-device': String(d.id) }, describeDevice(d));
    if (!d.this) {
      // Two clicks, no dialog: removal is for good.
      const b = el('button', { type: 'button', class: 'remove-device' }, 'Remove');
      b.addEventListener('click', () => {
        if (b.dataset.armed !== '1') {
          b.dataset.armed = '1';
          b.textContent = 'Remove for good?';
          return;
        }
        b.disabled = true;
        command({ type: 'remove_device', id: d.id })
          .then(refreshDevices)
          .catch(showError);
      });
      li.append(' ', b);
    }
    ul.append(li);
  }
}

function refreshDevices() {
  return command({ type: 'devices' }).then((r) => renderDevices(r.outcome.devices)).catch(showError);
}

$('devices-panel').addEventListener('toggle', () => { if ($('devices-panel').open) refreshDevices(); });
$('devices-refresh').addEventListener('click', refreshDevices);
$('link-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const code = $('link-code').value.trim();
  if (!code) return;
  $('info').textContent = 'linking…';
  command({ type: 'link_device', code })
    .then(() => { $('link-code').value = ''; return refreshDevices(); })
    .catch(showError);
});

// This computer as a new device of an account: the QR code and the code
// come from the local process (an SVG it drew, shown as an image).
$('join-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const body = {
    server: $('join-server').value.trim(),
    profile: $('join-profile').value.trim(),
    name: $('join-name').value.trim(),
    passphrase: $('join-pass').value,
  };
  $('join-pass').value = '';
  api('/api/link', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    .then((r) => {
      $('join-qr').src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(r.qr);
      $('join-code-text').textContent = r.code;
      $('join-status').textContent = 'waiting for the other device…';
      $('join-code').hidden = false;
    })
    .catch(showError);
});

// --- message requests -------------------------------------------------
function renderRequests(list) {
  const ul = $('requests');
  ul.replaceChildren();
  $('requests-count').textContent = list.length ? `(${list.length})` : '';
  for (const r of list) {
    const li = el('li', { 'data-request': r.conversation }, `${r.conversation} from @${r.from} (${r.messages} message(s)) `);
    const accept = el('button', { type: 'button', class: 'accept-request' }, 'Accept');
    accept.addEventListener('click', () => {
      accept.disabled = true;
      command({ type: 'accept_request', conversation: r.conversation })
        .then(() => refresh())
        .then(() => { refreshRequests(); return open(r.conversation); })
        .catch(showError);
    });
    const decline = el('button', { type: 'button', class: 'decline-request' }, 'Decline');
    decline.addEventListener('click', () => {
      decline.disabled = true;
      command({ type: 'decline_request', conversation: r.conversation }).then(refreshRequests).catch(showError);
    });
    li.append(accept, ' ', decline);
    ul.append(li);
  }
}

function refreshRequests() {
  return command({ type: 'requests' }).then((r) => renderRequests(r.outcome.requests)).catch(showError);
}

$('requests-panel').addEventListener('toggle', () => { if ($('requests-panel').open) refreshRequests(); });

// --- live events ------------------------------------------------------
const events = new EventSource('/api/events');
events.onmessage = (e) => {
  const ev = JSON.parse(e.data);
  switch (ev.type) {
    case 'message': {
      const m = ev.message;
      if (m.outgoing && m.state === 'pending' && m.kind !== 'reaction' && m.kind !== 'receipt') waiting.add(m.id);
      else if (waiting.delete(m.id) && lastLink) showLink(lastLink);
      if (waiting.has(m.id) && lastLink) showLink(lastLink);
      const c = conversationEntry(m.conversation);
      state.conversations = [c, ...state.conversations.filter((x) => x !== c)];
      const at = Date.parse(m.sent_at);
      if (!m.edited && m.kind !== 'reaction' && m.kind !== 'receipt' && (!c.last || at >= c.last.sent_at)) {
        c.last = { from: m.from, text: m.deleted ? 'message deleted' : m.kind === 'file' ? m.file.name : m.text, sent_at: at, kind: m.kind };
      }
      if (!m.outgoing && m.state === 'received' && !m.edited && !m.deleted) notify(m);
      if (m.conversation === current) {
        applyToOpen(() => upsertMessage(m));
        typing.delete(`${m.conversation}\n${m.from}`);
        renderTyping();
        if (!m.outgoing && m.state === 'received') markRead();
      } else if (!m.outgoing && m.kind !== 'system' && !m.edited && !m.deleted) c.unread += 1;
      if (!current && loaded) open(m.conversation, false).catch(showError);
      renderConversations();
      break;
    }
    case 'history':
      conversationEntry(ev.conversation);
      if (ev.conversation === current) applyToOpen(() => renderMessages(ev.messages, false));
      else if (!current && loaded) open(ev.conversation, false).catch(showError);
      renderConversations();
      break;
    case 'renamed': {
      const c = state.conversations.find((x) => x.name === ev.from);
      if (c) c.name = ev.to;
      if (current === ev.from) { current = ev.to; $('title').textContent = ev.to; }
      renderConversations();
      break;
    }
    case 'removed':
      if (ev.conversation === current) applyToOpen(() => document.querySelector(`#messages li[data-id="${CSS.escape(ev.id)}"]`)?.remove());
      break;
    case 'timer':
      if (ev.conversation === current) showTimer(ev.secs);
      break;
    case 'profile':
    case 'group_picture':
      notePerson(ev);
      renderConversations();
      break;
    case 'encryption':
      if (ev.post_quantum) classical.delete(ev.conversation); else classical.add(ev.conversation);
      renderConversations();
      break;
    case 'muted':
      showMuted(ev.conversation, ev.muted);
      break;
    case 'preference':
      if (ev.value) prefs[ev.name] = ev.value; else delete prefs[ev.name];
      if (ev.name === 'notify') applyNotifyPref();
      if (ev.name === 'notices.seen') renderNotices();
      break;
    case 'server_notice':
      if (!notices.some((n) => n.id === ev.id)) notices.push({ id: ev.id, text: ev.text, sent_at: ev.sent_at });
      notices.sort((a, b) => a.id - b.id);
      renderNotices();
      if (ev.fresh && notifyOn && document.hidden) new Notification('Notice from the server operator', { body: ev.text.slice(0, 200), tag: 'server-notice' });
      break;
    case 'description':
      if (ev.conversation === current) $('description').textContent = ev.text;
      break;
    case 'typing':
      if (ev.typing) typing.set(`${ev.conversation}\n${ev.from}`, Date.now() + 6000);
      else typing.delete(`${ev.conversation}\n${ev.from}`);
      renderTyping();
      break;
    case 'presence':
      for (const p of ev.online) {
        const c = state.conversations.find((x) => x.name === `@${p.handle}`);
        if (c) c.online = p.online;
      }
      renderConversations();
      break;
    case 'connection':
      showLink(ev.link);
      break;
    case 'identity':
      $('me').textContent = `@${ev.me}`;
      break;
    case 'switched':
      current = null;
      $('messages').replaceChildren();
      $('title').textContent = `Profile ${ev.profile}`;
      refresh().then(refreshRequests).catch(showError);
      break;
    case 'linked':
      $('join-status').textContent = `linked: this is now a device of @${ev.handle}; opening profile ${ev.profile}…`;
      break;
    case 'link_failed':
      $('join-status').textContent = ev.text;
      break;
    case 'notice':
      $('info').textContent = ev.conversation ? `${ev.conversation}: ${ev.text}` : ev.text;
      if (ev.text.startsWith('message request')) refreshRequests();
      break;
    case 'outcome':
      // A text's ✓ says it was sent; the device list shows in its panel.
      // The verification screen shows the safety number itself.
      if (!['sent', 'devices', 'requests', 'signalled', 'found', 'remembered', 'safety_number'].includes(ev.outcome.outcome)
        && !(ev.outcome.outcome === 'changed' && ['mute', 'unmute'].includes(ev.outcome.change))
        && !(ev.outcome.outcome === 'changed' && ['read', 'react', 'edit', 'delete', 'reply'].includes(ev.outcome.change))) {
        $('info').textContent = describe(ev.outcome);
      }
      break;
    case 'progress': {
      const pct = ev.total ? Math.floor((ev.done * 100) / ev.total) : 100;
      $('progress').textContent = `${ev.transfer}: ${pct}%`;
      break;
    }
    default:
      break;
  }
};

// --- search -----------------------------------------------------------
// The words searched for, marked in a result's text (built as text nodes
// and <mark> elements, never HTML).
function marked(text, query) {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  const out = document.createDocumentFragment();
  const lower = text.toLowerCase();
  let at = 0;
  while (at < text.length) {
    let best = null;
    for (const w of words) {
      const i = lower.indexOf(w, at);
      if (i >= 0 && (!best || i < best.i)) best = { i, n: w.length };
    }
    if (!best) break;
    out.append(document.createTextNode(text.slice(at, best.i)), el('mark', {}, text.slice(best.i, best.i + best.n)));
    at = best.i + best.n;
  }
  out.append(document.createTextNode(text.slice(at)));
  return out;
}

function renderFound(o) {
  $('search-panel').hidden = false;
  $('search-summary').textContent = describe(o);
  $('search-results').replaceChildren(...o.hits.map((hit) => {
    const b = el('button', { type: 'button', class: 'hit' });
    const when = new Date(hit.sent_at).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
    b.append(el('span', { class: 'meta' }, `${hit.conversation} · ${hit.from} · ${when}`), el('br'));
    const text = el('span', { class: 'hit-text' });
    text.append(marked(hit.text, o.query));
    b.append(text);
    b.addEventListener('click', () => jumpTo(hit).catch(showError));
    const li = el('li');
    li.append(b);
    return li;
  }));
}

// Opens a result's conversation and shows the message in context.
async function jumpTo(hit) {
  if (current !== hit.conversation) await open(hit.conversation);
  const li = document.querySelector(`#messages li[data-id="${CSS.escape(hit.id)}"]`);
  if (!li) { $('info').textContent = 'that message is no longer here'; return; }
  li.scrollIntoView({ block: 'center' });
  li.classList.add('found');
  li.focus({ preventScroll: true });
  setTimeout(() => li.classList.remove('found'), 4000);
}

$('search-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('search-text').value.trim();
  if (!text) return;
  command({ type: 'search', text }).then((r) => renderFound(r.outcome)).catch(showError);
});
$('search-close').addEventListener('click', () => {
  $('search-panel').hidden = true;
  $('search-text').value = '';
});

refresh().then(refreshRequests).catch(showError);
