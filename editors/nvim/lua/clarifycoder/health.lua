-- :checkhealth clarifycoder — binary found and runs, model found, adapter found.
local M = {}

local health = vim.health or require("health")
local start = health.start or health.report_start
local ok = health.ok or health.report_ok
local warn = health.warn or health.report_warn
local error = health.error or health.report_error

function M.check()
  start("clarifycoder")
  local cc = require("clarifycoder")
  local bin = cc.command()[1]
  if vim.fn.executable(bin) ~= 1 then
    error("server binary '" .. bin .. "' not found", { "Build it with `make setup` and set `cmd` in setup() or $CLARIFYCODER_PATH" })
    return
  end
  -- What the server would load: the settings given to setup(), then the project's
  -- clarifycoder.toml (found from the project root, as the server finds it), then the defaults.
  local args = { bin, "info" }
  local flags = { model = "--model", adapter = "--adapter", backend = "--backend", endpoint = "--endpoint", apiModel = "--api-model" }
  for key, flag in pairs(flags) do
    local value = cc.config.settings[key]
    if value ~= nil and value ~= "" then
      table.insert(args, flag)
      table.insert(args, tostring(value))
    end
  end
  local root = cc.roots()[1] or vim.fn.getcwd()
  local dir, name = cc.find_up(root, { "clarifycoder.toml", ".clarifycoder.toml" })
  if dir then
    table.insert(args, "--config")
    table.insert(args, dir .. "/" .. name)
  end
  -- stdout is the JSON; stderr has the warnings (an unknown key in clarifycoder.toml), which
  -- vim.fn.system() would mix into it.
  local stdout, stderr = {}, {}
  local job = vim.fn.jobstart(args, {
    cwd = vim.fn.isdirectory(root) == 1 and root or nil,
    stdout_buffered = true,
    stderr_buffered = true,
    on_stdout = function(_, data)
      stdout = data or {}
    end,
    on_stderr = function(_, data)
      stderr = data or {}
    end,
  })
  if job <= 0 then
    error("'" .. bin .. " info' could not be started", { "Check `cmd` in setup() or $CLARIFYCODER_PATH" })
    return
  end
  local code = vim.fn.jobwait({ job }, 30000)[1]
  if code == -1 then
    vim.fn.jobstop(job)
  end
  local messages = vim.tbl_filter(function(line)
    return line ~= ""
  end, stderr)
  if code ~= 0 then
    error("'" .. bin .. " info' failed" .. (code == -1 and " (no answer within 30 s)" or "") .. ": " .. table.concat(messages, "\n"))
    return
  end
  for _, line in ipairs(messages) do
    warn((line:gsub("^warning: ", "")))
  end
  local decoded, info = pcall(vim.fn.json_decode, table.concat(stdout, "\n"))
  if not decoded or type(info) ~= "table" then
    error("'" .. bin .. " info' printed no JSON: " .. table.concat(stdout, "\n"), { "Check that `cmd` is a clarifycoder binary" })
    return
  end
  ok("server binary: " .. bin .. " (version " .. info.version .. ")")
  local function set(v)
    return v ~= nil and v ~= vim.NIL
  end
  if info.backend == "openai" then
    local endpoint = set(info.endpoint) and info.endpoint or {}
    if set(endpoint.problem) then
      error(endpoint.problem, { "Set `endpoint` in the plugin's settings or in clarifycoder.toml" })
    else
      ok("backend: OpenAI-compatible endpoint" .. (set(endpoint.url) and (" at " .. endpoint.url) or ""))
    end
    return
  elseif not info.model.exists then
    error("model not found at " .. info.model.path, { info.installHint })
  elseif info.model.problem ~= nil and info.model.problem ~= vim.NIL then
    error("model at " .. info.model.path .. " cannot be used: " .. info.model.problem, { info.installHint })
  else
    ok("model: " .. info.model.path .. " (from " .. info.model.origin .. ")")
  end
  if not set(info.adapter) then
    if set(info.untuned) then
      warn(info.untuned, { "Install the shipped adapters with `make setup` in a ClarifyCoder checkout, or set `adapter` in settings" })
    else
      ok("adapter: none, as set: the model runs untuned")
    end
  elseif not info.adapter.exists then
    error("adapter not found at " .. info.adapter.path, { "Fix the adapter setting, or set it to `none`" })
  elseif info.adapter.problem ~= nil and info.adapter.problem ~= vim.NIL then
    error("adapter at " .. info.adapter.path .. " cannot be used: " .. info.adapter.problem, { "Fix the adapter setting, or set it to `none`" })
  else
    ok("adapter: " .. info.adapter.path)
  end
end

return M
