// Times opening a conversation of many messages in the web UI, in headless
// Chromium: from navigation to the newest message on screen, and from a
// click on the conversation to its newest message. Not a test (timings
// belong in docs/performance.md, not in assertions).
//
//   cargo build --release -p sotto-bench -p sotto-cli
//   ./target/release/sotto-bench search --messages 10000 --no-cli --keep /tmp/bench-profile
//   node web/tests/bench-open.mjs /tmp/bench-profile
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { resolve, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const profile = process.argv[2];
if (!profile) throw new Error('usage: node bench-open.mjs PROFILE_DIR (made by sotto-bench search --keep)');
const env = { ...process.env, XDG_DATA_HOME: mkdtempSync(join(tmpdir(), 'sotto-bench-web-')) };
const web = spawn(join(root, 'target', 'release', 'sotto'), ['--profile', profile, 'web', '--no-open'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
const url = await new Promise((ok, fail) => {
  createInterface({ input: web.stdout }).on('line', (l) => { if (l.startsWith('url: ')) ok(l.slice(5)); });
  web.on('exit', (c) => fail(new Error(`sotto web exited ${c}`)));
});
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
});
const median = (v) => v.sort((a, b) => a - b)[Math.floor(v.length / 2)];
const load = [];
const click = [];
for (let i = 0; i < 7; i++) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const t0 = Date.now();
  await page.goto(url);
  await page.locator('#messages li[data-id]').last().waitFor();
  load.push(Date.now() - t0);
  // Away and back: the time a click on the conversation takes.
  const name = await page.locator('#title').textContent();
  await page.evaluate(() => { document.getElementById('messages').replaceChildren(); });
  const t1 = Date.now();
  await page.locator(`#conversations button[data-name="${name}"]`).click();
  await page.locator('#messages li[data-id]').last().waitFor();
  click.push(Date.now() - t1);
  const shown = await page.locator('#messages li[data-id]').count();
  if (i === 0) console.log(`conversation ${name}: ${shown} messages rendered of the newest page`);
  await page.close();
}
console.log(`page_load_to_newest_message_ms median=${median(load)} all=${load.join(',')}`);
console.log(`click_to_newest_message_ms median=${median(click)} all=${click.join(',')}`);
await browser.close();
web.kill();
