// S3 workspace sync: the state of the s3shim agent in the status bar, and commands to
// flush, prefetch and resolve conflicts. Everything it knows comes from
// `s3shim status --json --sync-only` (schema in the project's README), never from text
// meant for people.
'use strict';

const vscode = require('vscode');
const { execFile } = require('child_process');
const path = require('path');

// Poll period while something is on its way to S3 (the status bar must follow within
// a second or two); when every change is in S3 the extension polls only on file events
// plus a slow safety poll, so an idle window costs one small process every IDLE_MS.
const BUSY_MS = 1000;
const IDLE_MS = 30000;
// File events come in bursts (a save is several events): one status request per burst.
const EVENT_DELAY_MS = 200;

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
  const busy = last && (last.pending.changes > 0 || last.uploads.paused);
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
}

function deactivate() {}

module.exports = { activate, deactivate };
