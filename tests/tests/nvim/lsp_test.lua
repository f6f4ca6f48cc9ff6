-- Headless Neovim (0.7+) drives the real server: open a Python file, wait for ClarifyCoder's
-- diagnostics, apply the "Ignore" code action, write what happened to $RESULT_FILE.
local bin = assert(os.getenv("CLARIFYCODER_BIN"), "CLARIFYCODER_BIN not set")
local fixture = assert(os.getenv("FIXTURE"), "FIXTURE not set")
local result_file = assert(os.getenv("RESULT_FILE"), "RESULT_FILE not set")

local report = {}
local function finish()
  local f = io.open(result_file, "w")
  f:write(table.concat(report, "\n"), "\n")
  f:close()
  vim.cmd("qall!")
end

local ok, err = pcall(function()
  vim.cmd("edit " .. fixture)
  local buf = vim.api.nvim_get_current_buf()
  local client_id = vim.lsp.start_client({
    name = "clarifycoder",
    cmd = { bin, "serve" },
    root_dir = vim.fn.fnamemodify(fixture, ":h"),
    init_options = { threshold = 0, maxTokens = 8, debounceMs = 50 },
  })
  assert(client_id, "the server did not start")
  vim.lsp.buf_attach_client(buf, client_id)

  local got = vim.wait(120000, function()
    return #vim.diagnostic.get(buf) > 0
  end, 100)
  local diagnostics = vim.diagnostic.get(buf)
  table.insert(report, "diagnostics=" .. #diagnostics)
  if not got then
    error("no diagnostics within two minutes")
  end
  table.insert(report, "source=" .. tostring(diagnostics[1].source))
  table.insert(report, "line=" .. diagnostics[1].lnum)

  local params = {
    textDocument = vim.lsp.util.make_text_document_params(buf),
    range = { start = { line = 0, character = 4 }, ["end"] = { line = 0, character = 4 } },
    context = { diagnostics = {} },
  }
  local responses = vim.lsp.buf_request_sync(buf, "textDocument/codeAction", params, 20000)
  local applied = false
  for _, response in pairs(responses or {}) do
    for _, action in ipairs(response.result or {}) do
      table.insert(report, "action=" .. action.title)
      if not applied and action.title:match("^Ignore `") then
        vim.lsp.util.apply_workspace_edit(action.edit, "utf-16")
        applied = true
      end
    end
  end
  table.insert(report, "applied=" .. tostring(applied))
  for _, line in ipairs(vim.api.nvim_buf_get_lines(buf, 0, -1, false)) do
    table.insert(report, "buffer|" .. line)
  end
end)
if not ok then
  table.insert(report, "error=" .. tostring(err))
end
finish()
