-- Headless test of the plugin: load it from the repository, find project roots, open a fixture,
-- wait for diagnostics, change a setting with setup() again, apply the "Answer" code action, run
-- :checkhealth, reload the model after an install. Writes a report to $RESULT_FILE.
local plugin_dir = assert(os.getenv("PLUGIN_DIR"))
local fixture = assert(os.getenv("FIXTURE"))
local result_file = assert(os.getenv("RESULT_FILE"))
vim.opt.runtimepath:prepend(plugin_dir)

local report = {}
local function add(line)
  table.insert(report, line)
end

local ok, err = pcall(function()
  local cc = require("clarifycoder")
  cc.setup({ settings = { threshold = 0, maxTokens = 8, debounceMs = 50 } })
  add("threshold=" .. tostring(cc.config.settings.threshold))
  add("severity=" .. tostring(cc.config.settings.severity)) -- not set: the project's file decides

  -- The nearest marker wins, whichever it is, and a path with spaces is walked like any other.
  local base = vim.fn.tempname() .. "/My Projects/repo"
  vim.fn.mkdir(base .. "/.git", "p")
  vim.fn.mkdir(base .. "/svc/src", "p")
  vim.fn.mkdir(base .. "/lib", "p")
  vim.fn.mkdir(base .. "/pkg", "p")
  vim.fn.writefile({}, base .. "/svc/clarifycoder.toml")
  -- A package's pyproject.toml does not make it a project of its own: .git comes first.
  vim.fn.writefile({}, base .. "/pkg/pyproject.toml")
  local roots = { ["/svc/src/a.py"] = base .. "/svc", ["/lib/b.py"] = base, ["/pkg/c.py"] = base }
  for file, want in pairs(roots) do
    local got = cc.root_dir(vim.fn.bufadd(base .. file))
    if got ~= want then
      error("root of " .. file .. ": " .. got .. ", not " .. want)
    end
  end
  add("nearest_root=true")

  vim.cmd("edit " .. fixture)
  vim.cmd("setfiletype python")
  local buf = vim.api.nvim_get_current_buf()
  local got = vim.wait(120000, function()
    return #vim.diagnostic.get(buf) > 0
  end, 100)
  if not got then
    error("no diagnostics within two minutes")
  end
  add("diagnostics=" .. #vim.diagnostic.get(buf))
  add("shown_severity=" .. tostring(vim.diagnostic.get(buf)[1].severity))
  add("root=" .. vim.fn.fnamemodify(cc.root_dir(buf), ":t"))
  add("commands=" .. tostring(vim.fn.exists(":ClarifyCheckWorkspace") == 2 and vim.fn.exists(":ClarifyRestart") == 2))

  -- setup() again: the running server gets the new settings (severity over the project's file).
  cc.setup({ settings = { threshold = 0, maxTokens = 8, debounceMs = 50, severity = "hint" } })
  if not vim.wait(30000, function()
    local d = vim.diagnostic.get(buf)
    return #d > 0 and d[1].severity == vim.diagnostic.severity.HINT
  end, 100) then
    error("a second setup() did not reach the running server")
  end
  add("resetup_severity=" .. tostring(vim.diagnostic.get(buf)[1].severity))

  local params = {
    textDocument = vim.lsp.util.make_text_document_params(buf),
    range = { start = { line = 1, character = 6 }, ["end"] = { line = 1, character = 6 } },
    context = { diagnostics = {} },
  }
  local responses = vim.lsp.buf_request_sync(buf, "textDocument/codeAction", params, 20000)
  for _, response in pairs(responses or {}) do
    for _, action in ipairs(response.result or {}) do
      if action.title:match("^Answer") then
        vim.lsp.util.apply_workspace_edit(action.edit, "utf-16")
        add("applied=" .. action.title)
      end
    end
  end
  for _, line in ipairs(vim.api.nvim_buf_get_lines(buf, 0, -1, false)) do
    add("buffer|" .. line)
  end

  -- A warning of `clarifycoder info` (on stderr) is shown as one; the JSON (stdout) still reads.
  local toml = vim.fn.fnamemodify(fixture, ":h") .. "/clarifycoder.toml"
  vim.fn.writefile(vim.list_extend(vim.fn.readfile(toml), { "no_such_key = 1" }), toml)
  vim.cmd("checkhealth clarifycoder")
  local health = vim.api.nvim_buf_get_lines(0, 0, -1, false)
  for _, line in ipairs(health) do
    add("health|" .. line)
  end
  local warned, read = false, false
  for _, line in ipairs(health) do
    warned = warned or (line:find("WARNING", 1, true) ~= nil and line:find("unknown key `no_such_key`", 1, true) ~= nil)
    read = read or line:find("server binary: ", 1, true) ~= nil
  end
  if not (warned and read) then
    error(":checkhealth did not show the warning of `clarifycoder info` beside its findings")
  end

  -- After an install (a stand-in that succeeds) the model of every server reloads, though the
  -- current buffer (:checkhealth's) has none attached.
  local real = vim.env.CLARIFYCODER_PATH
  vim.env.CLARIFYCODER_PATH = vim.fn.exepath("true")
  cc.status = nil
  cc.install_model("gemma3-270m")
  local reloaded = vim.wait(30000, function()
    return cc.status ~= nil
  end, 50)
  vim.env.CLARIFYCODER_PATH = real
  if not reloaded then
    error("the install did not reload the server's model")
  end
  add("reloaded=" .. cc.status.state)
end)
if not ok then
  add("error=" .. tostring(err))
end
local f = io.open(result_file, "w")
f:write(table.concat(report, "\n"), "\n")
f:close()
vim.cmd("qall!")
