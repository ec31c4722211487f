// fortunes.jsonl (opt-in: its licence is unclear, see the README text below):
// the fortune-cookie files of Debian's fortunes package
// (/usr/share/games/fortunes: plain files, entries separated by "%" lines) as
// text {"text"}; backspace overstriking resolved, entries over --max-chars or
// of ASCII-art layout (lines of mostly non-letters) left out; a stable hash
// order, at most --max.
//   node fortunes.mjs --in DIR --out DIR [--max N] [--max-chars N]
import fs from 'node:fs';
import path from 'node:path';
import { args, hashOrder, scrub, write } from './lib.mjs';

const o = args(process.argv, { max: 3000, maxChars: 1000 });
const skip = new Set(['art', 'ascii-art']); // pictures, not text
const files = fs.readdirSync(o.in).sort()
  .filter((n) => !/\.(dat|u8)$/.test(n) && !skip.has(n) && fs.lstatSync(path.join(o.in, n)).isFile());
const out = [];
for (const n of files) {
  const entries = fs.readFileSync(path.join(o.in, n), 'utf8').split(/^%$/m);
  entries.forEach((e, i) => {
    const t = scrub(e);
    const letters = (t.match(/[A-Za-z]/g) || []).length;
    if (t.length < 20 || t.length > o.maxChars || letters < t.length * 0.5) return;
    out.push({ key: `${n} ${i}`, text: t });
  });
}
write(o, 'fortunes', 'text', hashOrder(out, (r) => r.key).map((r) => ({ text: r.text })), `
Licence: unclear, so this set is opt-in (not made by default). Debian's
/usr/share/doc/fortunes/copyright gives the BSD licence of the University of
California (Copyright (c) 1991 The Regents of the University of California)
for the package; but the upstream Notes file (/usr/share/doc/fortunes/Notes.gz)
warns: "The fortunes contained in the fortune database have been collected
haphazardly from a cacophony of sources ... Since this database is not used
for profit, and since entire works are not published, it falls under fair
use, as we understand it. However, if any [one] decides to make a profit off
of this, they will need to double check it all". The entries are quotations
from many authors with no licence of their own. Use it for local demos only.
Only the "fortunes" package is used (not the offensive set, fortunes-off).
`);
