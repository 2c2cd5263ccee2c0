-- wrk's script for the benches: each request names the next MAC of the file (one a line, as
-- iPXE's ${mac:hexhyp} sends them), from a random start.
--   wrk ... -s bench/macs.lua http://HOST:PORT/ -- MACS_FILE "/ipxe?mac="
local macs, prefix, i = {}, "", 0
function init(args)
  for line in io.lines(args[1]) do macs[#macs + 1] = line end
  prefix = args[2]
  math.randomseed(os.time())
  i = math.random(#macs)
end
function request()
  i = i % #macs + 1
  return wrk.format("GET", prefix .. macs[i])
end
