// The extension's logic without VS Code: binary resolution and settings mapping.
const test = require("node:test");
const assert = require("node:assert/strict");
const { resolveBinary, initializationOptions, needsRestart, serial, settingValue, statusText } = require("../out/config.js");

function lookup(overrides) {
  const executables = new Set(overrides.executables ?? []);
  return {
    env: overrides.env ?? {},
    setting: overrides.setting ?? "",
    workspaceDir: overrides.workspaceDir,
    homeDir: overrides.homeDir,
    extensionDir: "/ext",
    isExecutable: (f) => executables.has(f),
    platform: overrides.platform ?? "linux",
  };
}

test("the environment variable wins over the setting, PATH and the bundled binary", () => {
  const l = lookup({
    env: { CLARIFYCODER_PATH: "/env/cc", PATH: "/bin" },
    setting: "/set/cc",
    executables: ["/env/cc", "/set/cc", "/bin/clarifycoder", "/ext/server/clarifycoder"],
  });
  assert.deepEqual(resolveBinary(l), { path: "/env/cc", source: "env" });
});

test("then the setting, then PATH, then the bundled binary", () => {
  const all = ["/set/cc", "/b/clarifycoder", "/ext/server/clarifycoder"];
  assert.deepEqual(resolveBinary(lookup({ setting: "/set/cc", env: { PATH: "/a:/b" }, executables: all })), {
    path: "/set/cc",
    source: "setting",
  });
  assert.deepEqual(resolveBinary(lookup({ env: { PATH: "/a:/b" }, executables: all })), {
    path: "/b/clarifycoder",
    source: "PATH",
  });
  assert.deepEqual(resolveBinary(lookup({ env: { PATH: "/a" }, executables: all })), {
    path: "/ext/server/clarifycoder",
    source: "bundled",
  });
});

test("a broken setting or variable is an error that names what to change", () => {
  const bad = resolveBinary(lookup({ setting: "/nope", executables: ["/ext/server/clarifycoder"] }));
  assert.match(bad.error, /setting clarifycoder\.path is '\/nope'/);
  const badEnv = resolveBinary(lookup({ env: { CLARIFYCODER_PATH: "/x" } }));
  assert.match(badEnv.error, /CLARIFYCODER_PATH/);
  const none = resolveBinary(lookup({ env: { PATH: "/a" } }));
  assert.match(none.error, /clarifycoder\.path to the absolute path of target\/release\/clarifycoder$/);
  const noneWin = resolveBinary(lookup({ env: { PATH: "C:\\a" }, platform: "win32" }));
  assert.match(noneWin.error, /target\/release\/clarifycoder\.exe$/);
});

test("a relative setting is taken from the first workspace folder, a leading ~ from the home directory", () => {
  const executables = ["/ws/target/release/clarifycoder", "/home/u/bin/clarifycoder"];
  assert.deepEqual(resolveBinary(lookup({ setting: "target/release/clarifycoder", workspaceDir: "/ws", homeDir: "/home/u", executables })), {
    path: "/ws/target/release/clarifycoder",
    source: "setting",
  });
  assert.deepEqual(resolveBinary(lookup({ setting: "~/bin/clarifycoder", workspaceDir: "/ws", homeDir: "/home/u", executables })), {
    path: "/home/u/bin/clarifycoder",
    source: "setting",
  });
  // Not found: the error shows the file that was looked at.
  const bad = resolveBinary(lookup({ setting: "./cc", workspaceDir: "/ws", executables }));
  assert.match(bad.error, /clarifycoder\.path is '\.\/cc' \('\/ws\/cc'\)/);
});

test("on Windows the setting may leave out .exe", () => {
  const l = lookup({
    setting: "target\\release\\clarifycoder",
    workspaceDir: "C:\\ws",
    platform: "win32",
    executables: ["C:\\ws\\target\\release\\clarifycoder.exe"],
  });
  assert.deepEqual(resolveBinary(l), { path: "C:\\ws\\target\\release\\clarifycoder.exe", source: "setting" });
  const home = lookup({ setting: "~\\cc.exe", homeDir: "C:\\Users\\u", platform: "win32", executables: ["C:\\Users\\u\\cc.exe"] });
  assert.deepEqual(resolveBinary(home), { path: "C:\\Users\\u\\cc.exe", source: "setting" });
});

test("settings map to the server's initializationOptions, empty strings left out", () => {
  const settings = {
    path: "/ignored",
    model: "",
    adapter: "none",
    backend: "embedded",
    endpoint: "",
    gpuLayers: 0,
    threshold: 0.7,
    severity: "warning",
    debounceMs: 250,
    maxQuestions: 2,
    perQuestion: true,
    runExamples: true,
    python: "",
  };
  assert.deepEqual(initializationOptions((k) => settings[k], true), {
    adapter: "none",
    backend: "embedded",
    gpuLayers: 0,
    threshold: 0.7,
    severity: "warning",
    debounceMs: 250,
    maxQuestions: 2,
    perQuestion: true,
    runExamples: true,
  });
});

test("an untrusted workspace's docstring examples are never run", () => {
  const settings = { runExamples: true, python: "/venv/bin/python" };
  assert.deepEqual(initializationOptions((k) => settings[k], false), {
    runExamples: false,
    python: "/venv/bin/python",
  });
});

test("any clarifycoder setting change restarts the server", () => {
  assert.equal(needsRestart((s) => s === "clarifycoder"), true);
  assert.equal(needsRestart((s) => s === "python"), false);
});

test("restarts run one after another, and one that fails does not stop the next", async () => {
  const errors = [];
  const enqueue = serial((e) => errors.push(e.message));
  const events = [];
  const task = (name, ms, fail) => async () => {
    events.push(`${name} start`);
    await new Promise((resolve) => setTimeout(resolve, ms));
    events.push(`${name} end`);
    if (fail) {
      throw new Error(`${name} failed`);
    }
  };
  // Queued at once, as two quick setting changes do; the first one is the slowest.
  const first = enqueue(task("a", 30, true));
  const second = enqueue(task("b", 1));
  await Promise.all([first, second]);
  assert.deepEqual(events, ["a start", "a end", "b start", "b end"]);
  assert.deepEqual(errors, ["a failed"]);
});

test("status bar texts", () => {
  assert.match(statusText("loading").text, /sync~spin/);
  assert.match(statusText("noModel", "model not found at /x").tooltip, /model not found/);
  assert.match(statusText("ready", "gemma").tooltip, /Ready: gemma/);
});

test("only settings the user set are sent, so the project's clarifycoder.toml decides the rest", () => {
  // As VS Code's WorkspaceConfiguration: get() falls back to package.json's defaults.
  const defaults = { backend: "embedded", threshold: 0.72, runExamples: true };
  const user = { threshold: { globalValue: 0.6, workspaceValue: 0.5 } };
  const source = {
    get: (k) => user[k]?.workspaceValue ?? user[k]?.globalValue ?? defaults[k],
    inspect: (k) => ({ defaultValue: defaults[k], ...(user[k] ?? {}) }),
  };
  const options = initializationOptions((k) => settingValue(source, k), true);
  assert.deepEqual(options, { threshold: 0.5, runExamples: true });
  assert.deepEqual(initializationOptions((k) => settingValue(source, k), false), { threshold: 0.5, runExamples: false });
});
