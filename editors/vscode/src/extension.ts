// VS Code entry point: starts `clarifycoder serve` for Python files and keeps it in step with
// the settings.

import * as fs from "fs";
import * as vscode from "vscode";
import { LanguageClient, LanguageClientOptions, ServerOptions, State } from "vscode-languageclient/node";
import { EngineState, initializationOptions, needsRestart, resolveBinary, settingValue, statusText } from "./config";

let client: LanguageClient | undefined;
let output: vscode.OutputChannel;
let status: vscode.StatusBarItem;

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
    extensionDir: context.extensionPath,
    isExecutable,
    platform: process.platform,
  });
  if ("error" in binary) {
    showState("error", binary.error);
    const choice = await vscode.window.showErrorMessage(`ClarifyCoder: ${binary.error}`, "Open Settings");
    if (choice === "Open Settings") {
      await vscode.commands.executeCommand("workbench.action.openSettings", "clarifycoder.path");
    }
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
  client = new LanguageClient("clarifycoder", "ClarifyCoder", serverOptions, clientOptions);
  client.onDidChangeState((event) => {
    if (event.newState === State.Stopped) {
      showState("stopped");
    }
  });
  showState("loading");
  await client.start();
  client.onNotification("clarifycoder/status", (params: { state: EngineState; message?: string }) =>
    showState(params.state, params.message),
  );
}

async function stop(): Promise<void> {
  if (client) {
    const running = client;
    client = undefined;
    await running.stop();
  }
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel("ClarifyCoder");
  status = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  status.command = "clarifycoder.showOutput";
  context.subscriptions.push(
    output,
    status,
    vscode.commands.registerCommand("clarifycoder.restart", async () => {
      await stop();
      await start(context);
    }),
    vscode.commands.registerCommand("clarifycoder.checkWorkspace", async () => {
      if (!client) {
        await start(context);
      }
      await client?.sendRequest("workspace/executeCommand", { command: "clarifycoder.server.checkWorkspace", arguments: [] });
    }),
    vscode.commands.registerCommand("clarifycoder.showOutput", () => output.show()),
    // Trusting the workspace turns on running its docstring examples (`runExamples`).
    vscode.workspace.onDidGrantWorkspaceTrust(async () => {
      await stop();
      await start(context);
    }),
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (needsRestart((section) => event.affectsConfiguration(section))) {
        await stop();
        await start(context);
      }
    }),
  );
  await start(context);
}

export async function deactivate(): Promise<void> {
  await stop();
}
