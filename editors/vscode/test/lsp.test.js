// The real server driven by the same protocol library vscode-languageclient uses.
const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const fs = require("node:fs");
const os = require("node:os");
const { spawn } = require("node:child_process");
const rpc = require("vscode-languageserver-protocol/node");
const { TextDocument } = require("vscode-languageserver-textdocument");
const { EXPERIMENTAL_CAPABILITIES, initializationOptions, resolveBinary } = require("../out/config.js");

const repo = path.resolve(__dirname, "../../..");
const FIXTURE = 'def process(data):\n    """Process the data properly."""\n    return data\n';

function binary() {
  const found = resolveBinary({
    env: { PATH: "", CLARIFYCODER_PATH: process.env.CLARIFYCODER_PATH },
    setting: path.join(repo, "target/release/clarifycoder"),
    extensionDir: path.join(repo, "editors/vscode"),
    isExecutable: (f) => fs.existsSync(f),
    platform: process.platform,
  });
  assert.ok(!("error" in found), `build the server first (make setup): ${found.error}`);
  return found.path;
}

function model() {
  const cache = process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache");
  const m = process.env.CLARIFYCODER_MODEL || path.join(cache, "clarifycoder/models/gemma-3-270m-q4_k_m.gguf");
  assert.ok(fs.existsSync(m), `model not found at ${m}; run make setup`);
  return m;
}

test("diagnostics arrive and a code action applies", { timeout: 180000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "clarify-vscode-"));
  const child = spawn(binary(), ["serve"], {
    env: { ...process.env, CLARIFYCODER_MODEL: model(), CLARIFYCODER_ADAPTER: "none", XDG_CACHE_HOME: path.join(dir, "cache") },
    stdio: ["pipe", "pipe", "ignore"],
  });
  const connection = rpc.createProtocolConnection(
    new rpc.StreamMessageReader(child.stdout),
    new rpc.StreamMessageWriter(child.stdin),
  );
  const statuses = [];
  connection.onNotification("clarifycoder/status", (p) => statuses.push(p.state));
  connection.onRequest("window/workDoneProgress/create", () => null);
  const diagnostics = new Promise((resolve) => {
    connection.onNotification(rpc.PublishDiagnosticsNotification.type, (p) => {
      if (p.diagnostics.length > 0) resolve(p);
    });
  });
  connection.listen();
  try {
    const settings = { threshold: 0, maxTokens: 8, debounceMs: 50, model: "" };
    const init = await connection.sendRequest(rpc.InitializeRequest.type, {
      processId: process.pid,
      rootUri: null,
      capabilities: {},
      initializationOptions: initializationOptions((k) => settings[k]),
    });
    assert.equal(init.serverInfo.name, "clarifycoder");
    // vscode-languageclient registers each advertised command with VS Code, which refuses an id
    // the extension registered itself, and then the client fails to start.
    const contributed = require("../package.json").contributes.commands.map((c) => c.command);
    const advertised = init.capabilities.executeCommandProvider.commands;
    assert.ok(advertised.length > 0);
    assert.deepEqual(advertised.filter((c) => contributed.includes(c)), []);
    await connection.sendNotification(rpc.InitializedNotification.type, {});
    const uri = "file://" + path.join(dir, "shop.py");
    await connection.sendNotification(rpc.DidOpenTextDocumentNotification.type, {
      textDocument: { uri, languageId: "python", version: 1, text: FIXTURE },
    });
    const published = await diagnostics;
    assert.equal(published.diagnostics.length, 1);
    assert.equal(published.diagnostics[0].source, "clarifycoder");
    assert.equal(published.diagnostics[0].range.start.line, 1);
    assert.deepEqual(statuses.slice(0, 2), ["loading", "ready"]);

    const actions = await connection.sendRequest(rpc.CodeActionRequest.type, {
      textDocument: { uri },
      range: { start: { line: 1, character: 6 }, end: { line: 1, character: 6 } },
      context: { diagnostics: published.diagnostics },
    });
    const answer = actions.find((a) => a.title.startsWith("Answer"));
    assert.ok(answer, JSON.stringify(actions));
    const doc = TextDocument.create(uri, "python", 1, FIXTURE);
    const edited = TextDocument.applyEdits(doc, answer.edit.changes[uri]);
    assert.match(edited, /"""Process the data properly\.\n\n {4}Clarifications:\n {4}- Q: .*\n {6}A:\n {4}"""\n {4}return data\n/);
    await connection.sendRequest(rpc.ShutdownRequest.type);
  } finally {
    connection.dispose();
    child.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a missing known model is the extension's offer alone, not also the server's error", { timeout: 60000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "clarify-vscode-"));
  // A known model and an empty model cache: the model is not installed.
  const child = spawn(binary(), ["serve"], {
    env: {
      ...process.env,
      CLARIFYCODER_MODEL: "qwen2.5-coder-0.5b",
      CLARIFYCODER_ADAPTER: "none",
      XDG_CACHE_HOME: path.join(dir, "cache"),
      XDG_CONFIG_HOME: path.join(dir, "config"),
    },
    stdio: ["pipe", "pipe", "ignore"],
  });
  const connection = rpc.createProtocolConnection(
    new rpc.StreamMessageReader(child.stdout),
    new rpc.StreamMessageWriter(child.stdin),
  );
  const messages = [];
  connection.onNotification(rpc.ShowMessageNotification.type, (p) => messages.push(p.message));
  connection.onRequest("window/workDoneProgress/create", () => null);
  const noModel = new Promise((resolve) => {
    connection.onNotification("clarifycoder/status", (p) => {
      if (p.state === "noModel") resolve(p);
    });
  });
  connection.listen();
  try {
    await connection.sendRequest(rpc.InitializeRequest.type, {
      processId: process.pid,
      rootUri: null,
      capabilities: { experimental: EXPERIMENTAL_CAPABILITIES },
      initializationOptions: {},
    });
    await connection.sendNotification(rpc.InitializedNotification.type, {});
    const status = await noModel;
    assert.equal(status.install, "qwen2.5-coder-0.5b");
    // The restart's answer comes after a second load, so the first one's messages are in.
    const restart = await connection.sendRequest(rpc.ExecuteCommandRequest.type, { command: "clarifycoder.server.restartEngine" });
    assert.equal(restart.ready, false);
    assert.deepEqual(messages, []);
    await connection.sendRequest(rpc.ShutdownRequest.type);
  } finally {
    connection.dispose();
    child.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
