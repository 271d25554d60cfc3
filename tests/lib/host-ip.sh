# host_ip: this machine's own non-loopback IPv4 address (the source address of its default route),
# or nothing. The real node registers under it, and the test servers listen on it when pods must
# reach them. Shared by tests/cluster/ and tests/run.sh. Source this file.
# shellcheck shell=bash
host_ip() {
  local ip
  ip=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
  [[ -n $ip && $ip != 127.* ]] && echo "$ip"
  return 0
}
