// sotto web: renders what the local sotto process sends. Every piece of
// text from a message goes through textContent, never innerHTML, so nothing
// a sender writes can run in this page.
'use strict';

const $ = (id) => document.getElementById(id);
let current = null;
let state = { conversations: [] };

async function api(path, options = {}) {
  const r = await fetch(path, { credentials: 'same-origin', ...options });
  if (!r.ok) throw new Error(await r.text());
  return r.headers.get('content-type')?.includes('json') ? r.json() : r.text();
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
function renderConversations() {
  const ul = $('conversations');
  ul.replaceChildren();
  for (const c of state.conversations) {
    const li = el('li');
    const b = el('button', { type: 'button', 'data-name': c.name });
    if (c.name === current) b.setAttribute('aria-current', 'true');
    if (c.name.startsWith('@')) {
      const dot = el('span', { class: c.online ? 'dot on' : 'dot', 'aria-label': c.online ? 'online' : 'offline', role: 'img' });
      b.append(dot);
    }
    b.append(document.createTextNode(c.name));
    if (c.unread > 0 && c.name !== current) b.append(el('span', { class: 'badge', 'aria-label': `${c.unread} unread` }, String(c.unread)));
    b.addEventListener('click', () => open(c.name));
    li.append(b);
    ul.append(li);
  }
  const profiles = $('profiles');
  profiles.replaceChildren(...(state.profiles || []).map((p) => {
    const li = el('li', {}, `${p.name}: ${p.detail} `);
    const b = el('button', { type: 'button', class: 'switch', 'data-profile': p.name }, 'Switch');
    b.addEventListener('click', () => {
      const text = $('profile-pass').value;
      $('profile-pass').value = '';
      api('/api/action', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ action: 'switch', to: p.name, text }) }).catch(showError);
    });
    li.append(b);
    return li;
  }));
}

async function refresh() {
  state = await api('/api/state');
  $('me').textContent = `@${state.me}`;
  $('link').textContent = state.link.includes('Online') ? 'online' : state.link.includes('Reconnecting') ? 'reconnecting…' : 'connecting…';
  if (!current && state.conversations.length) await open(state.conversations[0].name);
  renderConversations();
}

function dayLabel(d) {
  return d.toLocaleDateString(undefined, { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });
}

function messageItem(m) {
  if (m.kind === 'system') return el('li', { class: 'system', 'data-id': m.id }, m.text);
  const li = el('li', { class: m.outgoing ? 'out' : 'in', 'data-id': m.id });
  const when = new Date(m.sent_at);
  const mark = m.state === 'pending' ? ' · sending…' : m.state === 'sent' ? ' · ✓' : '';
  li.append(el('div', { class: 'meta' }, `${m.from} · ${when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}${mark}`));
  if (m.kind === 'file') {
    const p = el('p', { class: 'body' }, `File: ${m.file.name} (${m.file.size.toLocaleString()} bytes)`);
    li.append(p);
    if (m.text) li.append(el('p', { class: 'body' }, m.text));
    if (!m.outgoing) {
      const a = el('a', { href: `/api/download?id=${encodeURIComponent(m.file.id)}`, class: 'download', download: m.file.name }, 'Download');
      li.append(a);
    }
  } else {
    li.append(el('p', { class: 'body' }, m.text));
  }
  return li;
}

function renderMessages(list) {
  const ol = $('messages');
  ol.replaceChildren();
  let lastDay = null;
  for (const m of list) {
    const day = dayLabel(new Date(m.sent_at));
    if (day !== lastDay) {
      ol.append(el('li', { class: 'day' }, day));
      lastDay = day;
    }
    ol.append(messageItem(m));
  }
  ol.scrollTop = ol.scrollHeight;
}

async function open(name) {
  current = name;
  $('title').textContent = name;
  $('export').setAttribute('href', `/api/export?c=${encodeURIComponent(name)}`);
  const h = await api(`/api/history?c=${encodeURIComponent(name)}`);
  renderMessages(h.messages);
  const c = state.conversations.find((x) => x.name === name);
  if (c) c.unread = 0;
  renderConversations();
  $('text').focus();
}

// --- sending ----------------------------------------------------------
async function send() {
  const text = $('text').value;
  if (!current || !text.trim()) return;
  $('text').value = '';
  await api('/api/action', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ action: 'send', to: current, text }) });
}
$('composer').addEventListener('submit', (e) => { e.preventDefault(); send().catch(showError); });
$('text').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); send().catch(showError); }
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
  const args = [$('group-action').value, $('group-name').value.trim(), ...$('group-people').value.split(/\s+/).filter(Boolean)];
  api('/api/action', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ action: 'group', args }) }).catch(showError);
});

$('broadcast-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('broadcast-text').value;
  $('broadcast-text').value = '';
  api('/api/action', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ action: 'broadcast', text }) }).catch(showError);
});

$('safety').addEventListener('click', () => {
  if (!current || !current.startsWith('@')) { $('info').textContent = 'safety numbers are per person: open a one-to-one chat'; return; }
  api('/api/action', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ action: 'verify', to: current }) }).catch(showError);
});

function showError(e) { $('info').textContent = `error: ${e.message}`; }

// --- live events ------------------------------------------------------
const events = new EventSource('/api/events');
events.onmessage = (e) => {
  const ev = JSON.parse(e.data);
  if (ev.type === 'message') {
    const m = ev.message;
    if (m.conversation === current) {
      api(`/api/history?c=${encodeURIComponent(current)}`).then((h) => renderMessages(h.messages));
    }
    refresh().catch(showError);
  } else if (ev.type === 'history' || ev.type === 'renamed' || ev.type === 'presence' || ev.type === 'link' || ev.type === 'identity') {
    if (ev.type === 'renamed' && current === ev.from) current = ev.to;
    refresh().then(() => { if (current && (ev.type === 'history' || ev.type === 'renamed')) return open(current); }).catch(showError);
  } else if (ev.type === 'switched') {
    current = null;
    $('messages').replaceChildren();
    $('title').textContent = `Profile ${ev.profile}`;
    refresh().catch(showError);
  } else if (ev.type === 'info') {
    $('info').textContent = ev.text;
  } else if (ev.type === 'progress') {
    const pct = ev.total ? Math.floor((ev.done * 100) / ev.total) : 100;
    $('progress').textContent = `${ev.what}: ${pct}%`;
  }
};

refresh().catch(showError);
