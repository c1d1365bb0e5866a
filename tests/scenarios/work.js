// Reads and writes in the workspace with the calls Node (libuv) makes: statx through
// syscall(), scandir, open/close, rename, a child process spawned without LD_PRELOAD.
const fs = require('fs');
const path = require('path');
const cp = require('child_process');
const w = process.argv[2];
process.chdir(w);
console.log('node cwd:', process.cwd().replace(w, 'W'));
const big = fs.statSync('big.bin');
console.log('node stat:', big.size, big.isFile(), fs.statSync('src').isDirectory());
console.log('node readdir:', fs.readdirSync('.').sort().join(','));
const lines = fs.readFileSync('src/lib/deep/lines.txt', 'utf8').split('\n');
fs.mkdirSync('node-out/nested', { recursive: true });
fs.writeFileSync('node-out/nested/out.txt', `lines=${lines.length}\n`);
fs.renameSync('node-out/nested/out.txt', 'node-out/out.txt');
fs.copyFileSync('run.sh', 'node-out/run-copy.sh');
fs.rmSync('node-out/nested', { recursive: true });
console.log('node realpath:', fs.realpathSync('node-out/../src').replace(w, 'W'));
console.log('node exists:', fs.existsSync('node-out/nested'), fs.existsSync('node-out/out.txt'));
// VS Code strips LD_PRELOAD from the environment of the children it spawns.
const env = { ...process.env };
delete env.LD_PRELOAD;
const r = cp.spawnSync('sh', ['-c', 'cat node-out/out.txt && pwd'], { env, encoding: 'utf8' });
console.log('node child:', r.status, r.stdout.replace(w, 'W').trim().split('\n').join(' | '));
