-- bench/macs.lua at a steady pace: each connection waits DELAY_MS before each request, so that
-- 64 connections make about 64,000 / DELAY_MS requests a second.
--   wrk ... -s bench/macs-paced.lua http://HOST:PORT/ -- MACS_FILE "/ipxe?mac=" DELAY_MS
local macs, prefix, i, pause = {}, "", 0, 0
function init(args)
  for line in io.lines(args[1]) do macs[#macs + 1] = line end
  prefix = args[2]
  pause = tonumber(args[3])
  math.randomseed(os.time())
  i = math.random(#macs)
end
function delay()
  return pause
end
function request()
  i = i % #macs + 1
  return wrk.format("GET", prefix .. macs[i])
end
