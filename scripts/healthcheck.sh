#!/usr/bin/env bash
# The image's HEALTHCHECK (installed as /usr/local/bin/group-profile-proxy-healthcheck):
# GET /healthz at the URL the proxy wrote to its ADDRESS_FILE once listening,
# so the check follows --port, PORT and HOST instead of assuming 8080.
#
# Bash and coreutils only: the slim image has no curl or wget, and a `node -e
# "fetch(…)"` per check costs a whole Node process. The request goes through
# bash's /dev/tcp, under coreutils' `timeout`.
#
#   group-profile-proxy-healthcheck [ADDRESS_FILE]   (default: $ADDRESS_FILE)
#
# Exit 0 on an `HTTP/1.x 200` status line; exit 1 with a one-line reason on
# stderr otherwise (no file yet, connection refused, no answer, not 200).
set -u

readonly TIMEOUT_SECONDS=2

fail() {
  printf 'unhealthy: %s\n' "$1" >&2
  exit 1
}

file=${1:-${ADDRESS_FILE:-}}
[[ -n $file ]] || fail 'ADDRESS_FILE is not set, so the proxy writes no address to check'
[[ -e $file ]] || fail "no address file $file (the proxy is not listening yet, or has stopped)"
[[ -f $file && -r $file ]] || fail "cannot read the address file $file"
url=
IFS= read -r url <"$file" 2>/dev/null

# http://127.0.0.1:8080, http://[::1]:8080 or http://name:8080, as RunningSidecar.url has it.
if [[ $url =~ ^http://(\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):([0-9]{1,5})/?$ ]]; then
  host=${BASH_REMATCH[2]:-${BASH_REMATCH[3]}}
  port=${BASH_REMATCH[4]}
  authority=${BASH_REMATCH[1]}:$port
else
  url=${url//[^[:print:]]/?}
  fail "the address file $file holds no http://host:port URL: ${url:0:200}"
fi

# In a child bash so that `timeout` bounds the connect as well as the answer.
# It prints the status line, or the connect error and exits 2. No startup files:
# --norc, no BASH_ENV, and stdin not a socket (bash would read ~/.bashrc then).
probe='
  { exec 3<>"/dev/tcp/$1/$2"; } 2>&1 || exit 2
  printf "GET /healthz HTTP/1.0\r\nHost: %s\r\nUser-Agent: group-profile-proxy-healthcheck\r\n\r\n" "$3" >&3 || exit 3
  IFS= read -r line <&3 || [[ -n $line ]] || exit 4
  printf "%s\n" "${line%$'\''\r'\''}"
  # Read the (small) rest until the server closes, so neither side resets the connection.
  while IFS= read -r -t 1 _ <&3; do :; done
'
unset BASH_ENV
answer=$(timeout "$TIMEOUT_SECONDS" "$BASH" --norc -c "$probe" healthcheck "$host" "$port" "$authority" </dev/null)
status=$?
# 124: the deadline passed; after a status line only while reading the rest, which does not matter.
if [[ $status -eq 0 || ($status -eq 124 && -n $answer) ]]; then
  printable=${answer//[^[:print:]]/?}
  [[ $answer =~ ^HTTP/1\.[0-9]\ 200(\ |$) ]] || fail "GET http://$authority/healthz answered ${printable:0:200}"
  printf 'healthy: GET http://%s/healthz answered %s\n' "$authority" "${printable:0:200}"
  exit 0
fi
case $status in
  2)
    # bash says e.g. "bash: connect: Connection refused": keep the reason.
    reason=${answer##*: }
    fail "cannot connect to $authority: ${reason:-connection failed}"
    ;;
  3) fail "cannot send the request to $authority" ;;
  4) fail "$authority closed the connection without answering" ;;
  124) fail "no answer from $authority within ${TIMEOUT_SECONDS} s" ;;
  *) fail "the probe of $authority failed (exit $status)" ;;
esac
