// quiz.jsonl: the question/answer files of BSD quiz(6) (Debian bsdgames,
// /usr/share/games/bsdgames/quiz) as chat {"messages":[user, assistant]}.
// A quiz line is fields separated by ':' ('\' escapes, '\' at the end of a
// line continues it); a field is a pattern: {x} optional, [a|b] a choice,
// a|b alternatives. Its canonical text takes the first alternative and keeps
// optional parts ("{G{eorge} }Washington" -> "George Washington"). Each file
// below has question templates over its fields; all questions are kept in a
// stable hash order, at most --max.
//   node quiz.mjs --in QUIZ_DIR --out DIR [--max N]
import fs from 'node:fs';
import path from 'node:path';
import { args, hashOrder, scrub, write } from './lib.mjs';

const o = args(process.argv, { max: 3000 });

// [file, question template ({0} is field 0), answer field, optional parts kept in the answer]
const T = [
  ['africa', 'What is the capital of {0}?', 1], ['america', 'What is the capital of {0}?', 1],
  ['asia', 'What is the capital of {0}?', 1], ['europe', 'What is the capital of {0}?', 1],
  ['province', 'What is the capital of the Canadian province of {0}?', 1],
  ['midearth', "In Tolkien's Middle-earth, what is the chief city of {0}?", 1],
  ['state', 'What is the capital of the US state of {0}?', 1],
  ['state', 'What is the postal abbreviation of {0}?', 2],
  ['state', 'What is the state flower of {0}?', 3],
  ['elements', 'Which chemical element has the symbol {0}?', 3],
  ['elements', 'What is the atomic number of {3}?', 1],
  ['elements', 'What is the chemical symbol of {3}?', 0],
  ['elements', 'What is the atomic weight of {3}?', 2],
  ['pres', 'When was {0} President of the United States?', 1],
  ['pres', 'Who was Vice President under {0}?', 2],
  ['pres', 'Who succeeded {0} as President of the United States?', 3],
  ['sov', 'Who succeeded {0} on the English throne?', 2],
  ['collectives', 'What is the collective noun for a group of {0}?', 1],
  ['babies', 'What is the young of a {1} called?', 0],
  ['sexes', 'What is the female counterpart of "{0}"?', 1],
  ['posneg', 'What is the opposite of "{0}"?', 1],
  ['flowers', 'In the language of flowers, what does {0} signify?', 1],
  ['latin', 'Translate the Latin word "{0}" into English.', 1],
  ['murders', 'In the old verses and plays, who or what killed {0}?', 1],
  ['chinese', 'In the Chinese zodiac, which year follows the year of the {0}?', 1],
  ['inca', 'Who succeeded {0} as ruler of the Inca?', 1],
  ['locomotive', 'What is the name of a {0} steam locomotive wheel arrangement?', 1],
  ['morse', 'What is the Morse code for "{0}"?', 1],
  ['trek', 'In the original Star Trek, what is the {0}?', 1],
  ['ucc', 'What does section {0} of the Uniform Commercial Code cover?', 1],
  ['bard', 'Which line follows "{0}" in Shakespeare?', 1],
  ['bard', 'In which play of Shakespeare is the line "{0}"?', 2],
  ['bard', 'Who speaks the line "{0}" in Shakespeare?', 3],
  ['poetry', 'Which line follows "{0}"?', 1],
  ['poetry', 'Which poem has the line "{0}"?', 2],
  ['poetry', 'Who wrote the line "{0}"?', 3],
  ['arith', 'Fill in the blank: {0}', 1], ['mult', 'Fill in the blank: {0}', 1],
  ['seq-easy', 'What comes next in the sequence {0}?', 1, false],
  ['seq-easy', 'What is the sequence {0} called?', 2],
  ['seq-hard', 'What comes next in the sequence {0}?', 1, false],
  ['seq-hard', 'What is the sequence {0} called?', 2],
];

// Lines with continuations joined, split into raw fields ('\x' kept).
function records(text) {
  const out = [];
  let cur = '';
  for (const line of text.split('\n')) {
    if (/(^|[^\\])(\\\\)*\\$/.test(line)) { cur += line.slice(0, -1); continue; }
    cur += line;
    if (cur.trim()) out.push(splitFields(cur));
    cur = '';
  }
  return out;
}
function splitFields(s) {
  const f = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && i + 1 < s.length) cur += s[i] + s[++i];
    else if (s[i] === ':') f.push(cur), (cur = '');
    else cur += s[i];
  }
  f.push(cur);
  return f;
}
// Canonical text of a pattern: first alternatives, optional parts kept (or
// dropped when keepOpt is false).
function canon(p, keepOpt = true) {
  let i = 0;
  function alt(close) { // alternatives up to the closing char; returns the first
    const first = seq(close);
    while (p[i] === '|') { i++; seq(close); }
    return first;
  }
  function seq(close) {
    let s = '';
    while (i < p.length && p[i] !== '|' && p[i] !== close) {
      const c = p[i++];
      if (c === '\\' && i < p.length) s += p[i++];
      else if (c === '{') { const x = alt('}'); i++; if (keepOpt) s += x; }
      else if (c === '[') { s += alt(']'); i++; }
      else s += c;
    }
    return s;
  }
  return alt(undefined).replace(/\s+/g, ' ').trim();
}

const out = [];
for (const [file, tmpl, ans, keepOpt = true] of T) {
  const text = fs.readFileSync(path.join(o.in, file), 'utf8');
  for (const f of records(text)) {
    if (ans >= f.length) continue;
    let ok = true;
    const q = tmpl.replace(/\{(\d)\}/g, (_, n) => {
      const v = +n < f.length ? canon(f[+n]) : '';
      if (!v) ok = false;
      return v;
    });
    const a = canon(f[ans], keepOpt);
    if (!ok || !a) continue;
    out.push({ key: `${file} ${tmpl} ${q}`, q: scrub(q), a: scrub(a) });
  }
}
const recs = hashOrder(out, (r) => r.key).map((r) => ({
  messages: [{ role: 'user', content: r.q }, { role: 'assistant', content: r.a }],
}));
write(o, 'quiz', 'chat', recs, `
Licence: BSD (3-clause) of the University of California, by the reading of
/usr/share/doc/bsdgames/copyright: "Most games are under the standard BSD
terms" (Copyright (c) 1980, 1982, 1983, 1985-1994 The Regents of the
University of California. All rights reserved.) and "Auxiliary and data files,
distributed with the games in NetBSD, but not bearing copyright notices,
probably fall under the terms of the UCB or NetBSD copyrights and licences";
the quiz files bear no notice of their own. Redistribution and use, with or
without modification, are permitted provided that the notice, the conditions
and the disclaimer are retained and the University's name is not used to
endorse derived products. THE DATA IS PROVIDED BY THE REGENTS AND CONTRIBUTORS
"AS IS" AND ANY EXPRESS OR IMPLIED WARRANTIES ARE DISCLAIMED. Full text:
/usr/share/doc/bsdgames/copyright.
The answers are those of the 1980s-90s quiz files (e.g. capitals and
presidents of that time), not current facts.
`);
