-- Headless Neovim (0.7+) as the editor client of `gnn-coder lsp` (tests/e2e/lsp.rs).
-- Environment: GNN_BIN (the gnn-coder binary), GNN_ROOT (the workspace), GNN_IDX (the index
-- directory), GNN_OUT (where the JSON report goes). It opens a file, waits for the workspace
-- to be indexed, runs vim.lsp.buf.workspace_symbol (results land in the quickfix list), types
-- a new function into the buffer without saving, and asks for it by name.
local bin, root = os.getenv('GNN_BIN'), os.getenv('GNN_ROOT')
local idx, out = os.getenv('GNN_IDX'), os.getenv('GNN_OUT')
local report = {}

local function finish()
  local f = assert(io.open(out, 'w'))
  f:write(vim.fn.json_encode(report))
  f:close()
  vim.cmd('qall!')
end

local ok, err = pcall(function()
  local id = vim.lsp.start_client({
    name = 'gnn-coder',
    cmd = { bin, 'lsp', '--index', idx },
    root_dir = root,
    workspace_folders = { { uri = vim.uri_from_fname(root), name = 'polyglot' } },
  })
  assert(id, 'the language server did not start')
  vim.cmd('edit ' .. root .. '/python/text_utils.py')
  local buf = vim.api.nvim_get_current_buf()
  vim.lsp.buf_attach_client(buf, id)
  local client = vim.lsp.get_client_by_id(id)
  assert(vim.wait(60000, function()
    return client.server_capabilities ~= nil and client.server_capabilities.workspaceSymbolProvider
  end, 50), 'no initialize answer')

  local function symbols(q)
    local r = client.request_sync('workspace/symbol', { query = q }, 20000, 0)
    return (r and r.result) or {}
  end
  local function has(list, name)
    for _, s in ipairs(list) do
      if s.name == name then return true end
    end
    return false
  end

  -- The workspace is indexed in the background.
  assert(vim.wait(120000, function()
    return has(symbols('compute the levenshtein edit distance between two strings'), 'levenshtein_distance')
  end, 200), 'the workspace was not indexed')

  -- What a person types: :lua vim.lsp.buf.workspace_symbol('...'), results in the quickfix list.
  vim.fn.setqflist({})
  vim.lsp.buf.workspace_symbol('compute the levenshtein edit distance between two strings')
  vim.wait(20000, function() return #vim.fn.getqflist() > 0 end, 50)
  report.quickfix = {}
  for _, e in ipairs(vim.fn.getqflist()) do
    table.insert(report.quickfix, { text = e.text, lnum = e.lnum, file = vim.fn.bufname(e.bufnr) })
  end

  -- A function typed into the buffer, not saved, is found by name.
  vim.api.nvim_buf_set_lines(buf, -1, -1, false, { '', 'def zebra_nvim_unsaved_probe(x):', '    return x * 3' })
  local t0 = vim.loop.hrtime()
  report.unsaved_found = vim.wait(30000, function()
    return has(symbols('zebra_nvim_unsaved_probe'), 'zebra_nvim_unsaved_probe')
  end, 20)
  report.unsaved_ms = (vim.loop.hrtime() - t0) / 1e6
  report.modified = vim.bo[buf].modified
end)
report.ok = ok
report.error = err and tostring(err) or nil
finish()
