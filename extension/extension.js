// S3 workspace sync: the state of the s3shim agent in the status bar, and commands to
// flush, prefetch and resolve conflicts. Everything it knows comes from
// `s3shim status --json --sync-only` (schema in the project's README), never from text
// meant for people.
'use strict';

const vscode = require('vscode');
const { execFile } = require('child_process');
const fs = require('fs');
const path = require('path');

// Poll period while something is on its way to S3 (the status bar must follow within
// a second or two); when every change is in S3 the extension polls only on file events
// plus a slow safety poll, so an idle window costs one small process every IDLE_MS.
const BUSY_MS = 1000;
const IDLE_MS = 30000;
// File events come in bursts (a save is several events): one status request per burst.
const EVENT_DELAY_MS = 200;
// While the agent does not answer (it is being restarted, say), ask again at the busy
// pace for this long, so the bar does not show "no agent" for IDLE_MS after it is back.
const NO_AGENT_RETRY_MS = 60000;
// Tab changes come in bursts too (opening a file is several events): the open editors are
// written once things have been still this long, and only when they changed.
const EDITORS_DELAY_MS = 1000;

let out;
let item;
let timer;
let inFlight = false;
let again = false;
let last = null;
let disposed = false;
const seenConflicts = new Set();
const seenFailures = new Map();
let wasPaused = false;
let noAgentSince = 0;

function s3shimBin() {
  const configured = vscode.workspace.getConfiguration('s3shim').get('path');
  return configured || process.env.S3SHIM_BIN || 's3shim';
}

function mount() {
  return (last && last.mount) || process.env.S3SHIM_MOUNT || '/workspace';
}

// Runs s3shim with args; resolves { code, stdout, stderr }.
function s3shim(args, timeoutMs) {
  return new Promise((resolve) => {
    execFile(s3shimBin(), args, { timeout: timeoutMs || 0, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      let code = 0;
      if (err) code = typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout: String(stdout), stderr: String(stderr || (err && code === -1 ? err.message : '')) });
    });
  });
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u + 1 < units.length) { v /= 1024; u++; }
  return `${v.toFixed(1)} ${units[u]}`;
}

function plural(n, one, many) { return `${n} ${n === 1 ? one : many}`; }

function short(text, max) { return text.length > max ? `${text.slice(0, max - 1)}…` : text; }

// The status bar: one of "in S3", "N changes uploading (bytes)", "uploads paused:
// <reason>", "conflict", "N uploads failed".
function render(doc, error) {
  let text;
  let tip;
  let command = 's3shim.showStatus';
  let bg;
  if (!doc) {
    text = '$(circle-slash) S3: no agent';
    tip = `s3shim status failed: ${error || 'no answer'}`;
  } else {
    const p = doc.pending;
    switch (doc.state) {
      case 'paused':
        text = `$(debug-pause) uploads paused: ${short(doc.uploads.reason || '', 50)}`;
        bg = new vscode.ThemeColor('statusBarItem.warningBackground');
        break;
      case 'failed':
        text = `$(error) ${plural(doc.failed.length, 'upload', 'uploads')} failed`;
        bg = new vscode.ThemeColor('statusBarItem.errorBackground');
        break;
      case 'conflict':
        text = `$(warning) conflict: ${path.basename(doc.conflicts[0].path)}${doc.conflicts.length > 1 ? ` (+${doc.conflicts.length - 1})` : ''}`;
        bg = new vscode.ThemeColor('statusBarItem.warningBackground');
        command = 's3shim.resolveConflict';
        break;
      case 'uploading':
        text = `$(cloud-upload) ${plural(p.changes, 'change', 'changes')} uploading (${bytes(p.bytes)})`;
        command = 's3shim.flush';
        break;
      default:
        text = '$(check) in S3';
    }
    const lines = [`${doc.workspace || ''} → ${doc.mount}`];
    lines.push(p.changes ? `${plural(p.changes, 'change', 'changes')} not in S3 yet (${bytes(p.bytes)}), ${p.in_flight} uploading now` : 'every change is in S3');
    if (doc.uploads.paused) lines.push(`uploads paused: ${doc.uploads.reason}`);
    for (const f of doc.failed) lines.push(`failed: ${f.path}: ${f.reason}`);
    for (const c of doc.conflicts) lines.push(`conflict: ${c.path} (your version: ${c.copy})`);
    tip = lines.join('\n');
  }
  item.text = text;
  item.tooltip = tip;
  item.command = command;
  item.backgroundColor = bg;
  // Screen readers, and the browser test, read the state from here.
  item.accessibilityInformation = { label: `S3 sync: ${text.replace(/^\$\([a-z-]+\) /, '')}` };
  item.show();
}

// Notifications for what is new since the last status: a conflict, a failed upload.
function notify(doc) {
  for (const c of doc.conflicts) {
    const key = `${c.path}\0${c.copy}`;
    if (seenConflicts.has(key)) continue;
    seenConflicts.add(key);
    vscode.window.showWarningMessage(
      `Conflict: ${c.path} was changed in S3 by another writer. Your version is saved as ${c.copy}.`,
      'Resolve',
    ).then((pick) => { if (pick === 'Resolve') resolveConflict(c); });
  }
  // Paused: one notice for the pause; the paths waiting meanwhile are not failures.
  if (doc.uploads.paused && !wasPaused) {
    vscode.window.showWarningMessage(
      `Uploads to S3 are paused: ${doc.uploads.reason}. Changes stay here and go up when S3 answers again.`,
      'Show Status',
    ).then((pick) => { if (pick) showStatus(); });
  }
  wasPaused = doc.uploads.paused;
  if (doc.uploads.paused) return;
  const now = new Set(doc.failed.map((f) => f.path));
  for (const key of [...seenFailures.keys()]) if (!now.has(key)) seenFailures.delete(key);
  for (const f of doc.failed) {
    if (seenFailures.get(f.path) === f.reason) continue;
    seenFailures.set(f.path, f.reason);
    vscode.window.showErrorMessage(`Upload to S3 failed: ${f.path}: ${f.reason}`, 'Retry', 'Show Status')
      .then((pick) => {
        if (pick === 'Retry') flush();
        else if (pick === 'Show Status') showStatus();
      });
  }
}

// One status request at a time; a request asked for meanwhile runs right after.
async function refresh() {
  if (disposed) return;
  if (inFlight) { again = true; return; }
  inFlight = true;
  clearTimeout(timer);
  try {
    const r = await s3shim(['status', '--json', '--sync-only'], 10000);
    let doc = null;
    if (r.code === 0) {
      try { doc = JSON.parse(r.stdout); } catch (e) { r.stderr = `unreadable status: ${e.message}`; }
    }
    last = doc;
    render(doc, r.stderr.trim());
    if (doc) notify(doc);
  } finally {
    inFlight = false;
  }
  if (again) { again = false; return refresh(); }
  if (last) noAgentSince = 0;
  else if (!noAgentSince) noAgentSince = Date.now();
  const busy = last ? last.pending.changes > 0 || last.uploads.paused : Date.now() - noAgentSince < NO_AGENT_RETRY_MS;
  timer = setTimeout(refresh, busy ? BUSY_MS : IDLE_MS);
}

let eventTimer;
function soon() {
  if (eventTimer) return;
  eventTimer = setTimeout(() => { eventTimer = undefined; refresh(); }, EVENT_DELAY_MS);
}

async function flush() {
  const before = last && last.pending.changes;
  await vscode.window.withProgress({
    location: vscode.ProgressLocation.Notification,
    title: before ? `Uploading ${plural(before, 'change', 'changes')} to S3…` : 'Flushing changes to S3…',
  }, async () => {
    const r = await s3shim(['flush']);
    await refresh();
    if (r.code === 0) {
      vscode.window.showInformationMessage('Flush done: every change is in S3.');
    } else {
      vscode.window.showErrorMessage(`Flush: not every change is in S3. ${short(r.stderr.trim(), 400)}`, 'Show Status')
        .then((pick) => { if (pick) showStatus(); });
    }
  });
}

async function showStatus() {
  const r = await s3shim(['status'], 30000);
  out.clear();
  out.appendLine(r.code === 0 ? r.stdout.trimEnd() : `s3shim status failed: ${r.stderr.trim()}`);
  out.show(true);
}

async function prefetch(uri) {
  const folder = uri && uri.fsPath ? uri.fsPath : mount();
  const name = path.relative(mount(), folder) || path.basename(folder);
  await vscode.window.withProgress({
    location: vscode.ProgressLocation.Notification,
    title: `Making ${name} available offline…`,
  }, async () => {
    const r = await s3shim(['prefetch', folder]);
    if (r.code === 0) vscode.window.showInformationMessage(`${name} is available offline (every file's bytes are local).`);
    else vscode.window.showErrorMessage(`Prefetch of ${name} failed: ${short(r.stderr.trim(), 400)}`);
  });
}

// Opens VS Code's diff between your version (the conflict copy) and the file (S3's
// version, editable: merge there), then keeps one and removes the copy.
async function resolveConflict(conflict) {
  let c = conflict && conflict.copy ? conflict : null;
  if (!c) {
    await refresh();
    const all = (last && last.conflicts) || [];
    if (all.length === 0) { vscode.window.showInformationMessage('No conflicts.'); return; }
    if (all.length === 1) c = all[0];
    else {
      const pick = await vscode.window.showQuickPick(all.map((x) => ({ label: x.path, description: x.copy, c: x })), { placeHolder: 'Which conflict?' });
      if (!pick) return;
      c = pick.c;
    }
  }
  const file = vscode.Uri.file(path.join(mount(), c.path));
  const copy = vscode.Uri.file(path.join(mount(), c.copy));
  await vscode.commands.executeCommand('vscode.diff', copy, file,
    `${path.basename(c.path)}: yours (${path.basename(c.copy)}) ↔ S3's`);
  const mine = 'Keep Mine';
  const theirs = "Keep S3's (or My Merge)";
  const pick = await vscode.window.showInformationMessage(
    `Conflict in ${c.path}: keep your version, or the file as it is now (S3's version, or what you merged into it). The copy ${c.copy} is then removed.`,
    mine, theirs,
  );
  if (!pick) return;
  // A merge typed into the right side must be on disk before the copy goes.
  const open = vscode.workspace.textDocuments.find((d) => d.uri.fsPath === file.fsPath);
  if (open && open.isDirty) await open.save();
  if (pick === mine) {
    await vscode.workspace.fs.writeFile(file, await vscode.workspace.fs.readFile(copy));
  }
  await vscode.workspace.fs.delete(copy);
  // The diff editor showed a file that is gone now.
  for (const group of vscode.window.tabGroups.all) {
    for (const tab of group.tabs) {
      if (tab.input instanceof vscode.TabInputTextDiff && tab.input.original.fsPath === copy.fsPath) {
        await vscode.window.tabGroups.close(tab);
      }
    }
  }
  seenConflicts.delete(`${c.path}\0${c.copy}`);
  vscode.window.showInformationMessage(`Conflict in ${c.path} resolved: kept ${pick === mine ? 'your version' : "the file as it is"}; ${c.copy} removed.`);
  soon();
}

// ---------- open editors in stateless mode ----------
// code-server keeps the workbench's open editors in the browser (IndexedDB): a new
// browser, or a new container reached from one, starts with none. In stateless mode the
// wrapper names S3SHIM_IDE_DIR (<mount>/.code-server, in S3); the open text editors of
// the workspace are kept in its open-editors.json and opened again when the workbench
// comes up with no editor open.
let editorsFile = null;
let editorsTimer;
let editorsWritten = null;
let restoring = false;

// The open text editors under the mount: paths relative to it, in tab order, with their
// column, and the one that has the focus.
function openEditorsJson() {
  const root = mount();
  const editors = [];
  let active = null;
  for (const group of vscode.window.tabGroups.all) {
    for (const tab of group.tabs) {
      if (!(tab.input instanceof vscode.TabInputText) || tab.input.uri.scheme !== 'file') continue;
      const rel = path.relative(root, tab.input.uri.fsPath);
      if (!rel || rel.startsWith('..') || path.isAbsolute(rel) || rel.split(path.sep)[0] === '.code-server') continue;
      editors.push({ path: rel, column: group.viewColumn });
      if (group.isActive && tab.isActive) active = rel;
    }
  }
  return `${JSON.stringify({ version: 1, editors, active }, null, 1)}\n`;
}

// One write (one PUT once the agent's debounce has passed) per change of the open
// editors, not per tab event: debounced, and skipped when the file already says the same.
function writeEditors() {
  clearTimeout(editorsTimer);
  editorsTimer = undefined;
  if (restoring || !editorsFile) return;
  const text = openEditorsJson();
  if (text === editorsWritten) return;
  try {
    fs.mkdirSync(path.dirname(editorsFile), { recursive: true });
    fs.writeFileSync(editorsFile, text);
    editorsWritten = text;
  } catch (e) {
    out.appendLine(`could not record the open editors in ${editorsFile}: ${e.message}`);
  }
}

function editorsChanged() {
  if (restoring || !editorsFile) return;
  clearTimeout(editorsTimer);
  editorsTimer = setTimeout(writeEditors, EDITORS_DELAY_MS);
}

async function restoreEditors() {
  let saved;
  try {
    const text = fs.readFileSync(editorsFile, 'utf8');
    editorsWritten = text;
    saved = JSON.parse(text);
  } catch (e) {
    // None yet (a first start), or torn by a crash in the middle of a write.
    if (e.code !== 'ENOENT') out.appendLine(`ignoring ${editorsFile}: ${e.message}`);
    editorsWritten = openEditorsJson();
    return;
  }
  const open = vscode.window.tabGroups.all.some((g) => g.tabs.length > 0);
  if (open || !Array.isArray(saved.editors) || saved.editors.length === 0) return;
  restoring = true;
  try {
    const uri = (rel) => vscode.Uri.file(path.join(mount(), rel));
    for (const e of saved.editors) {
      try {
        await vscode.window.showTextDocument(uri(e.path), { viewColumn: e.column || 1, preview: false, preserveFocus: true });
      } catch (err) {
        out.appendLine(`could not reopen ${e.path}: ${err.message}`);
      }
    }
    const active = saved.editors.find((e) => e.path === saved.active);
    if (active) {
      await vscode.window.showTextDocument(uri(active.path), { viewColumn: active.column || 1, preview: false })
        .then(undefined, (err) => out.appendLine(`could not focus ${active.path}: ${err.message}`));
    }
  } finally {
    restoring = false;
  }
  // A file that could not be opened (deleted meanwhile) leaves the list now.
  editorsChanged();
}

function activate(context) {
  out = vscode.window.createOutputChannel('S3 sync');
  item = vscode.window.createStatusBarItem('s3shim.status', vscode.StatusBarAlignment.Left, 100);
  item.name = 'S3 sync';
  item.text = '$(sync) S3';
  item.show();
  const watcher = vscode.workspace.createFileSystemWatcher('**/*');
  context.subscriptions.push(
    out, item, watcher,
    watcher.onDidChange(soon), watcher.onDidCreate(soon), watcher.onDidDelete(soon),
    vscode.workspace.onDidSaveTextDocument(soon),
    vscode.commands.registerCommand('s3shim.flush', flush),
    vscode.commands.registerCommand('s3shim.showStatus', showStatus),
    vscode.commands.registerCommand('s3shim.prefetch', prefetch),
    vscode.commands.registerCommand('s3shim.resolveConflict', resolveConflict),
    { dispose() { disposed = true; clearTimeout(timer); clearTimeout(eventTimer); } },
  );
  refresh();
  if (process.env.S3SHIM_IDE_DIR) {
    editorsFile = path.join(process.env.S3SHIM_IDE_DIR, 'open-editors.json');
    context.subscriptions.push(
      vscode.window.tabGroups.onDidChangeTabs(editorsChanged),
      vscode.window.tabGroups.onDidChangeTabGroups(editorsChanged),
    );
    restoreEditors().then(undefined, (e) => out.appendLine(`restoring the open editors failed: ${e.message}`));
  }
}

// A change still waiting for its debounce is written now (code-server is stopping).
function deactivate() {
  if (editorsTimer) writeEditors();
}

module.exports = { activate, deactivate };
