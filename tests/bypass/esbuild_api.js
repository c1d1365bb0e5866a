// esbuild through its node API (as Vite uses it): one long-lived esbuild process, fed
// every request over its stdin/stdout pipe, given absolute paths in the folder by a node
// process whose cwd is outside it. argv: FOLDER ESBUILD_PACKAGE_DIR.
'use strict';
const fs = require('fs');
const [folder, pkg] = process.argv.slice(2);
const esbuild = require(pkg);

async function main() {
  // A context keeps its build in the service between rebuilds.
  const ctx = await esbuild.context({
    entryPoints: [`${folder}/web/src/main.js`],
    bundle: true,
    format: 'esm',
    write: false,
    metafile: true,
    logLevel: 'warning',
  });
  const first = await ctx.rebuild();
  console.log('inputs', Object.keys(first.metafile.inputs).sort().join(' '));
  for (const f of first.outputFiles) process.stdout.write(f.text);
  // A second build through the same service, written into the folder.
  await esbuild.build({
    entryPoints: [`${folder}/web/src/lib.js`],
    bundle: true,
    format: 'cjs',
    outfile: `${folder}/web/api-lib.js`,
    logLevel: 'warning',
  });
  process.stdout.write(fs.readFileSync(`${folder}/web/api-lib.js`, 'utf8'));
  // A file that does not exist: the error esbuild reports, as on a local disk.
  try {
    await ctx.dispose();
    await esbuild.build({ entryPoints: [`${folder}/web/src/missing.js`], write: false, logLevel: 'silent' });
    console.log('missing: built?');
  } catch (e) {
    console.log('missing:', e.errors.map((x) => x.text).join('; '));
  }
  esbuild.stop();
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
