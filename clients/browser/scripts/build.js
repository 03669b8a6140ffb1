// Builds dist/latchkey.min.js (ESM, minified) and fails when it is over
// 3 kB gzipped: the budget of a script every page of an app loads.
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'latchkey.min.js');
const LIMIT = 3072;

await build({
  entryPoints: [join(root, 'src', 'index.js')],
  outfile: out,
  format: 'esm',
  minify: true,
  target: 'es2020',
  legalComments: 'none',
  logLevel: 'warning',
});
const code = readFileSync(out);
const gzipped = gzipSync(code, { level: 9 }).length;
console.log(`dist/latchkey.min.js: ${code.length} bytes, ${gzipped} bytes gzipped (limit ${LIMIT})`);
if (gzipped > LIMIT) {
  console.error(`over the limit by ${gzipped - LIMIT} bytes`);
  process.exit(1);
}
