// Two sets from WordNet 3.0 (Debian wordnet-base, /usr/share/wordnet/data.*):
//   wordnet-defs.jsonl  prompt/completion: "Define: WORD (POS)\n" -> the gloss's
//                       definition (the part before its quoted examples)
//   wordnet-lex.jsonl   classification: a definition -> the synset's
//                       lexicographer file (noun.animal, verb.motion, ... 45
//                       classes), at most --max-per-class (and --max/45) of each
// Synsets are picked by a stable hash of "POS OFFSET".
//   node wordnet.mjs --in /usr/share/wordnet --out DIR [--max N] [--max-per-class N]
import fs from 'node:fs';
import path from 'node:path';
import { args, hashOrder, scrub, write } from './lib.mjs';

let perClass = 100;
const argv = process.argv.filter((a, i, all) => {
  if (a === '--max-per-class') return (perClass = +all[i + 1]), false;
  return all[i - 1] !== '--max-per-class';
});
const o = args(argv, { max: 5000 });
if (!(perClass > 0)) throw new Error('--max-per-class wants a positive integer');

// lexnames(5WN): lexicographer file number -> name
const LEX = ('adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute ' +
  'noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group ' +
  'noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession ' +
  'noun.process noun.quantity noun.relation noun.shape noun.state noun.substance noun.time ' +
  'verb.body verb.change verb.cognition verb.communication verb.competition verb.consumption ' +
  'verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession ' +
  'verb.social verb.stative verb.weather adj.ppl').split(' ');
const POS = { n: 'noun', v: 'verb', a: 'adjective', s: 'adjective', r: 'adverb' };

const synsets = [];
for (const file of ['data.noun', 'data.verb', 'data.adj', 'data.adv']) {
  for (const line of fs.readFileSync(path.join(o.in, file), 'utf8').split('\n')) {
    if (!line || line.startsWith('  ')) continue; // the licence header
    const bar = line.indexOf(' | ');
    if (bar < 0) continue;
    const f = line.slice(0, bar).split(' ');
    const lex = LEX[parseInt(f[1], 10)], pos = f[2], nwords = parseInt(f[3], 16);
    const words = [];
    for (let i = 0; i < nwords; i++) words.push(f[4 + 2 * i].replace(/\(.*\)$/, '').replace(/_/g, ' '));
    // the definition: the gloss up to its first quoted example
    const gloss = line.slice(bar + 3).trim();
    const q = gloss.search(/;?\s*"/);
    const def = scrub((q > 0 ? gloss.slice(0, q) : gloss).replace(/;\s*$/, ''));
    if (!lex || !def || def.startsWith('"')) continue;
    synsets.push({ key: `${pos} ${f[0]}`, lex, pos: POS[pos], word: words[0], def });
  }
}
const defs = hashOrder(synsets, (s) => s.key)
  .map((s) => ({ prompt: `Define: ${s.word} (${s.pos})\n`, completion: s.def }));
write(o, 'wordnet-defs', 'prompt_completion', defs, readme());

const per = Math.min(perClass, Math.ceil(o.max / LEX.length));
const count = {}, lexSet = [], seenDef = new Set();
for (const s of hashOrder(synsets, (x) => 'lex ' + x.key)) {
  if ((count[s.lex] || 0) >= per || seenDef.has(s.def)) continue;
  seenDef.add(s.def); // the same definition in two classes would teach noise
  count[s.lex] = (count[s.lex] || 0) + 1;
  lexSet.push({ text: s.def, label: s.lex });
}
write(o, 'wordnet-lex', 'classification',
  lexSet, readme(), (r) => r.label);

function readme() {
  return `Licence: WordNet 3.0 licence (Princeton University), which asks that the
copyright notice below appear on all copies, including modifications. From
/usr/share/doc/wordnet-base/copyright:

WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.

Permission to use, copy, modify and distribute this software and database and
its documentation for any purpose and without fee or royalty is hereby granted,
provided that you agree to comply with the following copyright notice and
statements, including the disclaimer, and that the same appear on ALL copies of
the software, database and documentation, including modifications that you
make for internal use or for distribution.

THIS SOFTWARE AND DATABASE IS PROVIDED "AS IS" AND PRINCETON UNIVERSITY MAKES
NO REPRESENTATIONS OR WARRANTIES, EXPRESS OR IMPLIED.  BY WAY OF EXAMPLE, BUT
NOT LIMITATION, PRINCETON UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES OF
MERCHANT- ABILITY OR FITNESS FOR ANY PARTICULAR PURPOSE OR THAT THE USE OF THE
LICENSED SOFTWARE, DATABASE OR DOCUMENTATION WILL NOT INFRINGE ANY THIRD PARTY
PATENTS, COPYRIGHTS, TRADEMARKS OR OTHER RIGHTS.

The name of Princeton University or Princeton may not be used in advertising or
publicity pertaining to distribution of the software and/or database.  Title to
copyright in this software, database and any associated documentation shall at
all times remain with Princeton University and LICENSEE agrees to preserve same.
`;
}
