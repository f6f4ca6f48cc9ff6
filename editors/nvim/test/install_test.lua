-- Headless test of the plugin with a known model that is not installed: the plugin names
-- :ClarifyInstallModel, once, and the server's own message does not come beside it. Writes each
-- message the user was shown to $RESULT_FILE.
local plugin_dir = assert(os.getenv("PLUGIN_DIR"))
local fixture = assert(os.getenv("FIXTURE"))
local result_file = assert(os.getenv("RESULT_FILE"))
vim.opt.runtimepath:prepend(plugin_dir)

local report = {}
vim.notify = function(message)
  table.insert(report, "message|" .. tostring(message):gsub("\n", " "))
end

local ok, err = pcall(function()
  local cc = require("clarifycoder")
  cc.setup({})
  vim.cmd("edit " .. fixture)
  vim.cmd("setfiletype python")
  local got = vim.wait(60000, function()
    return cc.status ~= nil and cc.status.state == "noModel"
  end, 50)
  if not got then
    error("the server reported no missing model")
  end
  table.insert(report, "install=" .. tostring(cc.status.install))
  -- A restart reports the same model missing again; the restart's answer comes after its load.
  local done = false
  cc.execute("clarifycoder.server.restartEngine", function()
    done = true
  end)
  if not vim.wait(60000, function()
    return done
  end, 50) then
    error("no answer to the restart")
  end
  vim.wait(300, function()
    return false
  end, 50)
end)
if not ok then
  table.insert(report, "error=" .. tostring(err))
end
local f = io.open(result_file, "w")
f:write(table.concat(report, "\n"), "\n")
f:close()
vim.cmd("qall!")
