-- tag(s) returns the fence a claimed entry's lease score carries (see
-- claim.lua), or nil for a score that is a due time (a whole number of
-- milliseconds). Prepended to the scripts that read fences.
local function tag(s)
  local i = math.floor(s)
  local k = (s - i) * 2048
  if k == 0 then
    return nil
  end
  return (i % 1000) * 2047 + k
end
