// A synthetic chat set of a given size, for upload benchmarks and tests
// (bench/upload, tests/api/test_upload_big_slow.sh): unique JSONL lines of
// about 500 bytes (system, user, assistant messages; words from a small
// vocabulary by a seeded xorshift, so the same size gives the same bytes),
// written in 8 MiB blocks and stopped before a line would pass the size.
// Prints the number of lines.
//   node synthetic.mjs FILE BYTES
import fs from 'node:fs';

const [file, size] = [process.argv[2], Number(process.argv[3])];
if (!file || !(size > 0)) throw new Error('usage: node synthetic.mjs FILE BYTES');
const W = ('the a model data train token layer loss step batch weight gradient file upload ' +
  'stream server daemon job queue worker check line chunk memory page cache disk byte ' +
  'question answer capital river city mountain north south east west old new small large ' +
  'red green blue quick slow bright dark early late first last good fine clear').split(' ');
let x = 2463534242;
const rnd = (n) => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), (x >>> 0) % n);
function words(n) {
  let s = W[rnd(W.length)];
  for (let i = 1; i < n; i++) s += ' ' + W[rnd(W.length)];
  return s;
}
const fd = fs.openSync(file, 'w');
const buf = Buffer.alloc(8 << 20);
let used = 0, total = 0, lines = 0;
for (;;) {
  const line = `{"messages":[{"role":"system","content":"You answer briefly."},` +
    `{"role":"user","content":"Question ${lines}: ${words(20 + rnd(20))}?"},` +
    `{"role":"assistant","content":"${words(20 + rnd(30))}."}]}\n`;
  if (total + line.length > size) break;
  if (used + line.length > buf.length) fs.writeSync(fd, buf, 0, used), (used = 0);
  used += buf.write(line, used, 'latin1');
  total += line.length;
  lines++;
}
fs.writeSync(fd, buf, 0, used);
fs.closeSync(fd);
console.log(lines);
