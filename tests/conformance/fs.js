// node 24 fs APIs over cold and new content; paths printed relative to the folder.
"use strict";
const fs = require("fs");
const fsp = require("fs/promises");
const path = require("path");
const w = process.argv[2];
process.chdir(w);
const rel = (p) => p.split(w).join("W");
const out = (...a) => console.log(...a);

async function main() {
  out("cwd", rel(process.cwd()));
  out("readdir", fs.readdirSync("seed").sort().join(","));
  out("types", fs.readdirSync("seed", { withFileTypes: true })
    .map((d) => `${d.name}:${d.isDirectory() ? "d" : d.isSymbolicLink() ? "l" : "f"}`).sort().join(","));
  out("recursive", fs.readdirSync("seed", { recursive: true }).sort().join(","));
  out("read", fs.readFileSync("seed/readme.txt", "utf8").trim());
  out("stat", fs.statSync("seed/data.bin").size, fs.lstatSync("seed/link").isSymbolicLink(),
    (fs.statSync("seed/bin/tool.sh").mode & 0o777).toString(8), fs.statSync("seed/readme.txt").mtimeMs);
  out("exists", fs.existsSync("seed/deep/a/b/c/leaf.txt"), fs.existsSync("seed/nope"));
  out("realpath", rel(fs.realpathSync("seed/link")), rel(fs.realpathSync.native("seed/deep/../link")));
  out("realpath-async", rel(await fsp.realpath("seed/deep/a")));
  const text = await new Promise((res, rej) =>
    fs.readFile("seed/src/main.c", "utf8", (e, d) => (e ? rej(e) : res(d))));
  out("async-read", text.split("\n")[0]);
  await fsp.mkdir("n/x/y", { recursive: true });
  await fsp.writeFile("n/x/y/f.txt", "promised\n");
  const fh = await fsp.open("n/x/y/f.txt", "a");
  await fh.appendFile("more\n");
  await fh.close();
  out("promises", (await fsp.readFile("n/x/y/f.txt", "utf8")).replace(/\n/g, "|"));
  await fsp.rename("n/x/y/f.txt", "n/moved.txt");
  out("opendir", (await (async () => { const r = []; for await (const d of await fsp.opendir("n")) r.push(d.name); return r.sort().join(","); })()));
  fs.cpSync("seed", "cp1", { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
  out("cp", fs.readdirSync("cp1", { recursive: true }).sort().join(","),
    fs.readlinkSync("cp1/link"), fs.statSync("cp1/readme.txt").mtimeMs);
  await fsp.cp("cp1", "cp2", { recursive: true });
  out("cp-async", fs.readFileSync("cp2/deep/a/b/c/leaf.txt", "utf8").trim());
  fs.rmSync("cp1", { recursive: true, force: true });
  await fsp.rm("cp2", { recursive: true });
  await new Promise((res, rej) => fs.rm("n", { recursive: true }, (e) => (e ? rej(e) : res())));
  out("rm", fs.existsSync("cp1"), fs.existsSync("cp2"), fs.existsSync("n"));
  fs.symlinkSync(path.join(w, "seed"), "abs-seed");
  out("abs-link", rel(fs.readlinkSync("abs-seed")), fs.readdirSync("abs-seed/deep").join(","));
  const tmp = fs.mkdtempSync(path.join(w, "tmp-"));
  out("mkdtemp", rel(path.dirname(tmp)), fs.statSync(tmp).isDirectory());
  fs.rmdirSync(tmp);
  fs.chmodSync("seed/readme.txt", 0o640);
  fs.utimesSync("seed/readme.txt", 1600000000, 1600000001);
  const st = fs.statSync("seed/readme.txt");
  out("meta", (st.mode & 0o777).toString(8), st.mtimeMs, st.atimeMs);
  fs.copyFileSync("seed/data.bin", "copy.bin");
  out("copyFile", fs.readFileSync("copy.bin").equals(fs.readFileSync("seed/data.bin")));

  // fs.watch: each expected event must arrive (bounded wait), native and under the shim.
  fs.mkdirSync("watched");
  const want = ["rename new.txt", "change new.txt", "rename renamed.txt", "rename gone.txt"];
  const seen = new Set();
  const watcher = fs.watch("watched");
  const done = new Promise((res) => {
    const t = setTimeout(res, 10000);
    watcher.on("change", (type, name) => {
      seen.add(`${type} ${name}`);
      if (want.every((x) => seen.has(x))) { clearTimeout(t); res(); }
    });
  });
  fs.writeFileSync("watched/new.txt", "1");
  fs.appendFileSync("watched/new.txt", "2");
  fs.writeFileSync("watched/gone.txt", "x");
  fs.renameSync("watched/new.txt", "watched/renamed.txt");
  fs.unlinkSync("watched/gone.txt");
  await done;
  watcher.close();
  for (const x of want) out("watch", x, seen.has(x));
}
main().catch((e) => { console.error(e); process.exit(1); });
