// Shared helpers of the demo-dataset converters (scripts/fetch-datasets.sh):
// argument parsing, a stable string hash for deterministic sampling, text
// scrubbing so every record is valid UTF-8 JSON the daemon accepts, and the
// writer that emits NAME.jsonl plus its NAME.README.md sidecar and prints one
// JSON summary line on stdout.
import fs from 'node:fs';
import path from 'node:path';

// --out DIR --max N --max-chars N --version-note TEXT (source versions)
export function args(argv, defaults) {
  const o = { out: null, max: defaults.max, maxChars: defaults.maxChars ?? 2000, source: '' };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i], v = argv[i + 1];
    if (a === '--out') o.out = v, i++;
    else if (a === '--max') o.max = +v, i++;
    else if (a === '--max-chars') o.maxChars = +v, i++;
    else if (a === '--source') o.source = v, i++;
    else if (a === '--in') o.in = v, i++;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.out) throw new Error('--out DIR is required');
  if (!(o.max > 0)) throw new Error('--max wants a positive integer');
  return o;
}

// FNV-1a 32-bit: the sampling key (same input, same order, on any machine).
export function fnv(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}
// Items sorted by the hash of key(item), ties by key: a stable shuffle.
export function hashOrder(items, key) {
  return items
    .map((it) => ({ it, k: key(it), h: fnv(key(it)) }))
    .sort((a, b) => a.h - b.h || (a.k < b.k ? -1 : a.k > b.k ? 1 : 0))
    .map((x) => x.it);
}

// Control characters (but \n and \t) and lone surrogates out; overstrike
// ("x\bx") resolved; CRLF to LF; trailing spaces per line trimmed.
export function scrub(s) {
  s = s.replace(/.\x08/gs, '').replace(/\r\n?/g, '\n');
  s = s.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '');
  s = s.toWellFormed ? s.toWellFormed() : s.replace(/[\ud800-\udfff]/g, '\ufffd');
  return s.replace(/[ \t]+\n/g, '\n').trim();
}
// At most n characters, cut at a word boundary when one is near.
export function cap(s, n) {
  if (s.length <= n) return s;
  const cut = s.lastIndexOf(' ', n);
  return s.slice(0, cut > n * 0.8 ? cut : n).trimEnd();
}

// Writes DIR/NAME.jsonl (records deduplicated by their JSON, in the order
// given, at most max) and DIR/NAME.README.md; prints the summary line.
export function write(o, name, format, records, readme, labelOf) {
  fs.mkdirSync(o.out, { recursive: true });
  const seen = new Set(), lines = [], labels = {};
  for (const r of records) {
    if (lines.length >= o.max) break;
    const j = JSON.stringify(r);
    if (seen.has(j)) continue;
    seen.add(j);
    lines.push(j);
    if (labelOf) labels[labelOf(r)] = (labels[labelOf(r)] || 0) + 1;
  }
  const body = lines.join('\n') + '\n';
  const file = path.join(o.out, `${name}.jsonl`);
  fs.writeFileSync(file, body);
  const sorted = Object.fromEntries(Object.keys(labels).sort().map((k) => [k, labels[k]]));
  const summary = { name, format, examples: lines.length, bytes: Buffer.byteLength(body), file };
  if (labelOf) summary.labels = Object.keys(sorted).length, summary.label_counts = sorted;
  const counts = labelOf ? `\nLabel counts: ${JSON.stringify(sorted)}\n` : '';
  fs.writeFileSync(path.join(o.out, `${name}.README.md`),
    `# ${name}.jsonl\n\nFormat: ${format}; ${lines.length} examples; ` +
    `made by scripts/fetch-datasets.sh.\nSource: ${o.source}\n${counts}\n${readme.trim()}\n`);
  process.stdout.write(JSON.stringify(summary) + '\n');
}

// The licence text of a Debian package, as its copyright file gives it.
export function debianCopyright(pkg) {
  return fs.readFileSync(`/usr/share/doc/${pkg}/copyright`, 'utf8');
}
