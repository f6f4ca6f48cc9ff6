// The extension's logic that does not need VS Code: finding the server binary and turning
// settings into the server's initializationOptions. Tested with node's test runner.

import * as path from "path";

export interface BinaryLookup {
  /** Process environment (CLARIFYCODER_PATH, PATH). */
  env: Record<string, string | undefined>;
  /** The `clarifycoder.path` setting ("" when unset). */
  setting: string;
  /** The first workspace folder, which a relative `clarifycoder.path` is taken from. */
  workspaceDir?: string;
  /** The user's home directory, which a leading `~` in `clarifycoder.path` stands for. */
  homeDir?: string;
  /** The extension's install directory (holds `server/clarifycoder` in bundled builds). */
  extensionDir: string;
  /** Whether a file exists and is executable. */
  isExecutable(file: string): boolean;
  /** `process.platform`. */
  platform: string;
}

export type BinaryResolution =
  | { path: string; source: "env" | "setting" | "PATH" | "bundled" }
  | { error: string };

/**
 * The file `clarifycoder.path` names: a leading `~` is the home directory, and a relative path is
 * taken from the first workspace folder (the extension host's working directory means nothing to
 * the user).
 */
function settingPath(lookup: BinaryLookup): string {
  const paths = lookup.platform === "win32" ? path.win32 : path.posix;
  let file = lookup.setting;
  if (lookup.homeDir && (file === "~" || file.startsWith("~/") || (lookup.platform === "win32" && file.startsWith("~\\")))) {
    file = paths.join(lookup.homeDir, file.slice(1));
  }
  if (!paths.isAbsolute(file) && lookup.workspaceDir) {
    file = paths.join(lookup.workspaceDir, file);
  }
  return file;
}

/** Resolves the server binary: CLARIFYCODER_PATH → `clarifycoder.path` → PATH → bundled. */
export function resolveBinary(lookup: BinaryLookup): BinaryResolution {
  const exe = lookup.platform === "win32" ? "clarifycoder.exe" : "clarifycoder";
  const fromEnv = lookup.env.CLARIFYCODER_PATH;
  if (fromEnv) {
    return lookup.isExecutable(fromEnv)
      ? { path: fromEnv, source: "env" }
      : { error: `CLARIFYCODER_PATH is set to '${fromEnv}', which is not an executable file; fix or unset it` };
  }
  if (lookup.setting) {
    const file = settingPath(lookup);
    // On Windows the setting may leave out the binary's `.exe`.
    const candidates = lookup.platform === "win32" && !file.toLowerCase().endsWith(".exe") ? [file, `${file}.exe`] : [file];
    const found = candidates.find((f) => lookup.isExecutable(f));
    return found
      ? { path: found, source: "setting" }
      : {
          error: `the setting clarifycoder.path is '${lookup.setting}'${file === lookup.setting ? "" : ` ('${file}')`}, which is not an executable file; change the setting or clear it to search PATH`,
        };
  }
  const sep = lookup.platform === "win32" ? ";" : ":";
  for (const dir of (lookup.env.PATH ?? "").split(sep)) {
    if (dir && lookup.isExecutable(path.join(dir, exe))) {
      return { path: path.join(dir, exe), source: "PATH" };
    }
  }
  const bundled = path.join(lookup.extensionDir, "server", exe);
  if (lookup.isExecutable(bundled)) {
    return { path: bundled, source: "bundled" };
  }
  return {
    error: `the clarifycoder binary was not found (CLARIFYCODER_PATH, the setting clarifycoder.path, PATH); build it with \`make setup\` and set clarifycoder.path to the absolute path of target/release/${exe}`,
  };
}

/** Settings forwarded to the server, in the server's camelCase keys. */
export const SERVER_SETTINGS = [
  "model",
  "adapter",
  "backend",
  "endpoint",
  "apiModel",
  "apiKeyEnv",
  "apiMarkup",
  "concurrency",
  "batch",
  "gpuLayers",
  "threads",
  "ctxSize",
  "threshold",
  "severity",
  "debounceMs",
  "maxQuestions",
  "maxTokens",
  "perQuestion",
  "runExamples",
  "python",
] as const;

/** What `WorkspaceConfiguration` gives for one setting: its value, and where the user set it. */
export interface SettingsSource {
  get(key: string): unknown;
  inspect(key: string): { globalValue?: unknown; workspaceValue?: unknown; workspaceFolderValue?: unknown } | undefined;
}

/**
 * A setting's value as the server should get it: only where the user set one (user, workspace
 * or folder settings), so that the project's `clarifycoder.toml`, then the server's defaults,
 * decide the rest. VS Code's own defaults would hide the file (a team's `backend = "openai"`
 * under the default "embedded"). `runExamples` is the exception: on by default here (in a
 * trusted workspace) and off by default in the server.
 */
export function settingValue(source: SettingsSource, key: string): unknown {
  if (key === "runExamples") {
    return source.get(key);
  }
  const set = source.inspect(key);
  return set?.workspaceFolderValue ?? set?.workspaceValue ?? set?.globalValue;
}

/**
 * initializationOptions from the `clarifycoder.*` settings. Empty strings are left out so that
 * the server's own resolution (environment, config file, defaults) applies. Running docstring
 * examples executes the workspace's code, so it is on only in a trusted workspace.
 */
export function initializationOptions(get: (key: string) => unknown, trusted: boolean): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  for (const key of SERVER_SETTINGS) {
    const value = get(key);
    if (value === undefined || value === null || value === "") {
      continue;
    }
    options[key] = value;
  }
  if (!trusted) {
    options.runExamples = false;
  }
  return options;
}

/**
 * What the extension tells the server under the client capabilities' `experimental`: it offers to
 * install a missing known model itself (`offerInstall`), so the server sends no error message of
 * its own beside that offer.
 */
export const EXPERIMENTAL_CAPABILITIES = { clarifycoderInstallModel: true };

/**
 * A queue that runs each task after the one before it has settled, however fast they come (a
 * second server must not start while the first one stops); a task that fails goes to `onError`
 * and the tasks after it still run.
 */
export function serial(onError: (e: unknown) => void): (task: () => Promise<void>) => Promise<void> {
  let queue: Promise<void> = Promise.resolve();
  return (task) => (queue = queue.then(task).catch(onError));
}

/** Whether a configuration change needs the server restarted. */
export function needsRestart(affects: (section: string) => boolean): boolean {
  return affects("clarifycoder");
}

export type EngineState = "loading" | "ready" | "noModel" | "error" | "stopped";

/** Status-bar text and tooltip for an engine state. */
export function statusText(state: EngineState, message?: string): { text: string; tooltip: string } {
  switch (state) {
    case "loading":
      return { text: "$(sync~spin) ClarifyCoder", tooltip: "Loading the model…" };
    case "ready":
      return { text: "$(comment-discussion) ClarifyCoder", tooltip: message ? `Ready: ${message}` : "Ready" };
    case "noModel":
      return { text: "$(warning) ClarifyCoder: no model", tooltip: message ?? "No model found" };
    case "error":
      return { text: "$(error) ClarifyCoder", tooltip: message ?? "The server failed" };
    case "stopped":
      return { text: "$(circle-slash) ClarifyCoder", tooltip: message ?? "The server is not running" };
  }
}
