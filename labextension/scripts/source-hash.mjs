// The hash of the sources the shipped bundle is built from, so a test can tell a stale bundle.
// `node scripts/source-hash.mjs` prints it; `--write` records it beside the bundle
// (../newsletter_kit/labextension/build-source.json) and copies install.json there (the build
// empties that folder; install.json tells `jupyter labextension list` the Python package). tests/test_labextension.py computes the
// same hash in Python: every file of SOURCES, sorted by path, as "path\0sha256(content)\n".
import { createHash } from 'node:crypto';
import { copyFileSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const SOURCES = ['install.json', 'package.json', 'package-lock.json', 'tsconfig.json', 'schema', 'src', 'style'];

function files(path) {
  return statSync(path).isDirectory() ? readdirSync(path).flatMap(name => files(join(path, name))) : [path];
}

const all = SOURCES.flatMap(name => files(join(root, name)))
  .map(path => relative(root, path).split('\\').join('/'))
  .sort();
const hash = createHash('sha256');
for (const path of all) {
  const digest = createHash('sha256').update(readFileSync(join(root, path))).digest('hex');
  hash.update(`${path}\0${digest}\n`);
}
const sources = hash.digest('hex');
if (process.argv.includes('--write')) {
  const bundle = join(root, '..', 'newsletter_kit', 'labextension');
  copyFileSync(join(root, 'install.json'), join(bundle, 'install.json'));
  const target = join(bundle, 'build-source.json');
  writeFileSync(target, JSON.stringify({ sources, files: all }, null, 2) + '\n');
  console.log(`recorded ${sources} in ${relative(process.cwd(), target)}`);
} else {
  console.log(sources);
}
