# free_ports N: N distinct random ports in 20000-31999 (below the Linux ephemeral range, so other
# programs' outgoing connections cannot take them between this check and the bind), each verified
# bindable on 127.0.0.1. Shared by tests/cluster/up.sh and tests/services/. Source this file.
# shellcheck shell=bash
free_ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
held, ports = [], []
while len(ports) < n:
    p = random.randrange(20000, 32000)
    if p in ports:
        continue
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        s.close()
        continue
    held.append(s)
    ports.append(p)
print(*ports)
for s in held:
    s.close()
PY
}
