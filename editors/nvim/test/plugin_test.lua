-- Headless test of the plugin: load it from the repository, open a fixture, wait for
-- diagnostics, apply the "Answer" code action, run :checkhealth. Writes a report to $RESULT_FILE.
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

  vim.cmd("checkhealth clarifycoder")
  for _, line in ipairs(vim.api.nvim_buf_get_lines(0, 0, -1, false)) do
    add("health|" .. line)
  end
end)
if not ok then
  add("error=" .. tostring(err))
end
local f = io.open(result_file, "w")
f:write(table.concat(report, "\n"), "\n")
f:close()
vim.cmd("qall!")
